"""Independent re-implementations of the metric scripts that posebench's profiles reproduce, for end-to-end parity
tests (files -> `posebench eval` -> results JSON and per-image CSV against what each script would print).

Written from reading each released script, step by step, not from posebench's code: their folder listings,
name rules, reads (`imageio.imread(...).astype(np.float32)`, PIL, torchvision transforms), resize calls and dtypes,
rounding or truncation, batch loops with drop-last (and "batch size is bigger than the data size"), SSIM / PSNR
arguments, LPIPS input ranges, Inception preprocessing and the TTUR Frechet formula with `scipy.linalg.sqrtm`.
Only the networks are swapped for test-sized ones (an Inception-shaped trunk and a random AlexNet, the same files
given to `posebench eval`). Scripts that ran on an old scikit-image (`compare_ssim`, float64 inside) get float64
arrays; those on scikit-image >= 0.19 (CFLD, PCDMs) get their float32 arrays as they are.

- GFLA `script/metrics.py` (RenYurui/Global-Flow-Local-Attention): `gfla`.
- PIDM `utils/metrics.py` (ankanbhunia/PIDM): `pidm`.
- PCDMs `metrics.py` + `caculate_metrics_{256,512}.py` (tencent-ailab/PCDMs): `pcdms`.
- CFLD `models/metrics.py`, `pose_transfer_test.py`, `datasets/deepfashion.py` (YanzuoLu/CFLD): `cfld`.
- clean: scikit-image, lpips and clean-fid (`make_resizer("PIL", False, "bicubic")`, `frechet_distance`): `clean`.

Every function returns {"fid", "lpips", "ssim", "ssim_256", "psnr", "n": {...}, "per_image": {generated file
name: {metric: value}}} (keys a script does not compute are absent). Where the script's SSIM runs in float32
(scikit-image >= 0.19 on float32 arrays: CFLD, PCDMs), each image also gets `ssim@f64` / `ssim_256@f64`, the same
call on the same arrays in float64: it isolates the input preparation from float32 round-off (about 1e-6 per
image), which posebench, computing in float64, does not share. The FID listing order of GFLA, PIDM and
PCDMs is `glob` order on their machines; here it is `sorted`, the deterministic order posebench documents.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import linalg
from skimage.metrics import peak_signal_noise_ratio as compare_psnr
from skimage.metrics import structural_similarity as compare_ssim
from torch import nn

# ---------------------------------------------------------------------------------------------- networks


class TinyInception(nn.Module):
    """An Inception-shaped test network: the attribute names of torchvision's `Inception3` trunk (so the same
    state dict loads into posebench's extractor), tiny convolutions, 2048 output channels. Only stands in for the
    weights; every script's own preprocessing around it is reproduced below."""

    def __init__(self) -> None:
        super().__init__()

        def conv(cin: int, cout: int, k: int = 3, s: int = 1, p: int = 0) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, k, stride=s, padding=p), nn.ReLU())

        self.Conv2d_1a_3x3 = conv(3, 8, s=2)
        self.Conv2d_2a_3x3 = conv(8, 8)
        self.Conv2d_2b_3x3 = conv(8, 8, p=1)
        self.Conv2d_3b_1x1 = conv(8, 12, k=1)
        self.Conv2d_4a_3x3 = conv(12, 16)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            setattr(self, name, conv(16, 16, p=1))
        self.Mixed_6a = conv(16, 16, s=2)
        self.Mixed_7a = conv(16, 24, s=2)
        self.Mixed_7b = conv(24, 24, p=1)
        self.Mixed_7c = conv(24, 2048, k=1)
        self.fc = nn.Linear(2048, 10)  # ImageNet-style logits for the Inception Score (the FID trunk ignores it)


def tiny_inception(seed: int = 0) -> TinyInception:
    torch.manual_seed(seed)
    net = TinyInception()
    with torch.no_grad():  # varied, positive-leaning features, so covariances and FID are informative
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0, (2.0 / (m.in_channels * m.kernel_size[0] * m.kernel_size[1])) ** 0.5)
                m.bias.uniform_(-0.1, 0.1)
    return net.eval()


def _blocks(inception: nn.Module) -> nn.Sequential:
    """GFLA `InceptionV3` blocks 0-3 / CFLD `inception_blocks`: the trunk in their order, up to the average pool."""
    i = inception
    return nn.Sequential(
        i.Conv2d_1a_3x3, i.Conv2d_2a_3x3, i.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        i.Conv2d_3b_1x1, i.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        i.Mixed_5b, i.Mixed_5c, i.Mixed_5d, i.Mixed_6a, i.Mixed_6b, i.Mixed_6c, i.Mixed_6d, i.Mixed_6e,
        i.Mixed_7a, i.Mixed_7b, i.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1))).eval()


def gfla_inception_features(inception: nn.Module, batch: torch.Tensor) -> np.ndarray:
    """GFLA `InceptionV3.forward` (resize_input, normalize_input) on [0, 1] input; `pred.reshape(B, -1)`."""
    x = F.interpolate(batch, size=(299, 299), mode="bilinear")  # F.upsample, align_corners unset
    x = x.clone()
    x[:, 0] = x[:, 0] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x[:, 1] = x[:, 1] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x[:, 2] = x[:, 2] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    with torch.no_grad():
        return _blocks(inception)(x).cpu().numpy().reshape(batch.shape[0], -1)


def cfld_forward_inception(inception: nn.Module, x: torch.Tensor) -> np.ndarray:
    """CFLD `build_metric.forward_inception` (in-place renormalisation of the interpolated batch)."""
    x = F.interpolate(x, size=(299, 299), mode="bilinear")
    x[:, 0] = x[:, 0] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x[:, 1] = x[:, 1] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x[:, 2] = x[:, 2] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    with torch.no_grad():
        return _blocks(inception)(x).reshape(x.shape[0], -1).numpy()


def lpips_alex(alexnet_state: dict) -> nn.Module:
    """`lpips.LPIPS(net='alex')` (version 0.1, its own linear layers) with the test's AlexNet backbone."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    # lpips' alexnet slices hold torchvision's `features` modules under their own indices
    feats = {k.removeprefix("features."): v for k, v in alexnet_state.items() if k.startswith("features.")}
    own = model.net.state_dict()
    mapped = {}
    for key in own:
        _, idx, param = key.split(".")  # sliceN.<features index>.<weight|bias>
        mapped[key] = feats[f"{idx}.{param}"]
    model.net.load_state_dict(mapped)
    return model.eval()


# ---------------------------------------------------------------------------------------------- shared pieces


def imread(path: Path) -> np.ndarray:
    """`imageio.imread` of an 8-bit RGB file: the decoded uint8 array."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def ttur_frechet(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """`calculate_frechet_distance` of the TTUR-derived scripts (GFLA, PIDM, PCDMs; CFLD inlines the same), with
    `scipy.linalg.sqrtm` (about 12 s at D = 2048 on 2 cores: `frechet_from_activations` is the fast equivalent)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_from_activations(act1: np.ndarray, act2: np.ndarray, sqrtm: bool = False) -> float:
    """The TTUR formula on two activation sets with mu = mean and sigma = np.cov, as the scripts do.

    `sqrtm=True` uses `ttur_frechet` (the scripts' `scipy.linalg.sqrtm`). Otherwise tr((S1 S2)^(1/2)) comes from
    the same quantity in closed form for covariances of n < D rows: with centred rows X1, X2 and
    S_i = X_i^T X_i / (n_i - 1), the nonzero eigenvalues of S1 S2 are the squared singular values of
    X1 X2^T / sqrt((n1 - 1)(n2 - 1)), so the trace is that matrix's nuclear norm (an n1 x n2 SVD instead of a
    2048 x 2048 Schur decomposition; an independent algorithm, not posebench's eigen-decomposition)."""
    mu1, mu2 = np.mean(act1, axis=0), np.mean(act2, axis=0)
    if sqrtm:
        return ttur_frechet(mu1, np.cov(act1, rowvar=False), mu2, np.cov(act2, rowvar=False))
    x1, x2 = act1.astype(np.float64) - act1.mean(axis=0), act2.astype(np.float64) - act2.mean(axis=0)
    n1, n2 = len(act1), len(act2)
    tr_covmean = np.linalg.svd(x1 @ x2.T / np.sqrt((n1 - 1) * (n2 - 1)), compute_uv=False).sum()
    diff = mu1 - mu2
    tr1, tr2 = (x1 * x1).sum() / (n1 - 1), (x2 * x2).sum() / (n2 - 1)
    return float(diff.dot(diff) + tr1 + tr2 - 2 * tr_covmean)


def _ttur_activations(imgs: np.ndarray, inception: nn.Module, batch_size: int) -> np.ndarray:
    """`FID.get_activations`: a batch larger than the data becomes the data size; the remainder is dropped."""
    d0 = imgs.shape[0]
    if batch_size > d0:
        batch_size = d0
    n_batches = d0 // batch_size
    pred_arr = np.empty((n_batches * batch_size, 2048))
    for i in range(n_batches):
        start, end = i * batch_size, (i + 1) * batch_size
        batch = torch.from_numpy(imgs[start:end]).type(torch.FloatTensor)
        pred_arr[start:end] = gfla_inception_features(inception, batch).reshape(end - start, -1)
    return pred_arr




def _listing(folder: Path) -> list[Path]:
    """`list(path.glob('*.jpg')) + list(path.glob('*.png'))`, in sorted order (see the module doc)."""
    return sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png"))


def _lpips_batches(files_1: list, files_2: list, load, model: nn.Module, batch_size: int = 64) -> list[float]:
    """The scripts' LPIPS loop: batches of `batch_size` (shrunk to the data size), remainder dropped; `load`
    turns a file into the HWC float array the script feeds (already in the script's input range)."""
    d0 = len(files_1)
    if batch_size > d0:
        batch_size = d0
    out: list[float] = []
    for i in range(d0 // batch_size):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        a = torch.from_numpy(np.array([load(f) for f in files_1[sl]]).transpose((0, 3, 1, 2))).type(torch.FloatTensor)
        b = torch.from_numpy(np.array([load(f) for f in files_2[sl]]).transpose((0, 3, 1, 2))).type(torch.FloatTensor)
        with torch.no_grad():
            out.extend(model.forward(a, b).reshape(-1).tolist())
    return out


def _ssims(img_gt: np.ndarray, img_pred: np.ndarray, sigma: float, *, uniform: bool, old_skimage: bool,
           channel_axis: int) -> dict[str, float]:
    """The scripts' two SSIM calls on [0, 1] float32 arrays: the uniform-51 `ssim` (data range 1) and the Gaussian
    `ssim_256` on x255 floats with the prediction's range. `old_skimage`: `compare_ssim` (scikit-image < 0.18)
    computed in float64; newer versions compute float32 input in float32, and `@f64` keys add the float64 value."""
    img_gt_256, img_pred_256 = img_gt * 255.0, img_pred * 255.0
    data_range = img_pred_256.max() - img_pred_256.min()

    def both(a: np.ndarray, b: np.ndarray, f64: bool, **kw) -> float:
        if f64:
            a, b = a.astype(np.float64), b.astype(np.float64)
        return float(compare_ssim(a, b, channel_axis=channel_axis, **kw))

    gauss = dict(gaussian_weights=True, sigma=sigma, use_sample_covariance=False, data_range=data_range)
    row = {"ssim_256": both(img_gt_256, img_pred_256, old_skimage, **gauss)}
    if uniform:
        row["ssim"] = both(img_gt, img_pred, old_skimage, data_range=1, win_size=51)
    if not old_skimage:
        row["ssim_256@f64"] = both(img_gt_256, img_pred_256, True, **gauss)
        if uniform:
            row["ssim@f64"] = both(img_gt, img_pred, True, data_range=1, win_size=51)
    return row


def _reconstruction(pairs: list[tuple[Path, Path]], load, sigma: float, *, uniform: bool,
                    old_skimage: bool) -> dict[str, dict[str, float]]:
    """`Reconstruction_Metrics.calculate_from_disk`: per (generated, ground truth) file, [0, 1] float32 arrays from
    `load`; PSNR with data range 1, then the SSIMs (`_ssims`)."""
    per: dict[str, dict[str, float]] = {}
    for gen, gt in pairs:
        img_gt, img_pred = load(gt), load(gen)
        row = {"psnr": float(compare_psnr(img_gt, img_pred, data_range=1))}
        row.update(_ssims(img_gt, img_pred, sigma, uniform=uniform, old_skimage=old_skimage, channel_axis=2))
        per[gen.name] = row
    return per


def _summary(per: dict[str, dict[str, float]], lpips_files: list[Path], lpips_values: list[float]) -> dict:
    out: dict = {"per_image": {k: dict(v) for k, v in per.items()}, "n": {}}
    for metric in ("psnr", "ssim", "ssim_256", "ssim@f64", "ssim_256@f64"):
        vals = [row[metric] for row in per.values() if metric in row]
        if vals:
            out[metric] = float(np.mean(vals))
            out["n"][metric] = len(vals)
    for f, v in zip(lpips_files, lpips_values, strict=False):
        out["per_image"][f.name]["lpips"] = v
    out["lpips"] = float(np.mean(lpips_values))
    out["n"]["lpips"] = len(lpips_values)
    return out


# ---------------------------------------------------------------------------------------------- GFLA


def _gfla_pairs(gt_path: Path, distorted_path: Path, gt_prefix: str, gt_ext: str) -> tuple[list, list]:
    """`preprocess_path_for_deform_task`: sorted generated files; ground truth = the part after `_2_` up to `_vis`,
    with the script's prefix and extension; a generated file without its ground truth is skipped."""
    gt_list, distorted_list = [], []
    for distorted in _listing_sorted(distorted_path):
        image = distorted.name.split("_2_")[-1].split("_vis")[0] + gt_ext
        gt_image = gt_path / (gt_prefix + image)
        if gt_image.is_file():
            gt_list.append(gt_image)
            distorted_list.append(distorted)
    return gt_list, distorted_list


def _listing_sorted(folder: Path) -> list[Path]:
    """`get_image_list(dir)`: glob jpg + glob png, then `flist.sort()` (full paths)."""
    return sorted([*folder.glob("*.jpg"), *folder.glob("*.png")], key=lambda p: str(p))


def gfla(gen_dir: Path, gt_dir: Path, real_dir: Path, inception: nn.Module, lpips_model: nn.Module) -> dict:
    """GFLA `script/metrics.py __main__` (FID, reconstruction metrics, LPIPS); ground truth `{tgt}.png`."""
    def load01(f: Path) -> np.ndarray:
        return imread(f).astype(np.float32) / 255.0

    def fid_imgs(folder: Path) -> np.ndarray:
        imgs = np.array([imread(fn).astype(np.float32) for fn in _listing(folder)])
        imgs = imgs.transpose((0, 3, 1, 2))
        imgs /= 255
        return imgs

    real = _ttur_activations(fid_imgs(real_dir), inception, 64)
    gen = _ttur_activations(fid_imgs(gen_dir), inception, 64)
    gt_list, distorted = _gfla_pairs(gt_dir, gen_dir, "", ".png")
    per = _reconstruction(list(zip(distorted, gt_list, strict=True)), load01, 1.5, uniform=True, old_skimage=True)
    lp = _lpips_batches(distorted, gt_list, lambda f: imread(f).astype(np.float32) / 127.5 - 1, lpips_model)
    out = _summary(per, distorted, lp)
    out.update(fid=frechet_from_activations(real, gen, sqrtm=True))
    out["n"].update(fid=len(gen), fid_real=len(real))
    return out


# ---------------------------------------------------------------------------------------------- PIDM


def pidm(gen_dir: Path, gt_dir: Path, real_dir: Path, inception: nn.Module, lpips_model: nn.Module) -> dict:
    """PIDM `utils/metrics.py __main__`: FID and LPIPS after `cv2.resize(float32, (176, 256))`; SSIM/PSNR on the
    unresized 256x256 images against `deep{tgt}.png`."""
    import cv2

    def fid_imgs(folder: Path) -> np.ndarray:
        imgs = np.array([cv2.resize(imread(fn).astype(np.float32), (176, 256)) for fn in _listing(folder)])
        imgs = imgs.transpose((0, 3, 1, 2))
        imgs /= 255
        return imgs

    real = _ttur_activations(fid_imgs(real_dir), inception, 64)
    gen = _ttur_activations(fid_imgs(gen_dir), inception, 64)
    gt_list, distorted = _gfla_pairs(gt_dir, gen_dir, "deep", ".png")
    lp = _lpips_batches(distorted, gt_list,
                        lambda f: cv2.resize(imread(f).astype(np.float32), (176, 256)) / 127.5 - 1, lpips_model)
    per = _reconstruction(list(zip(distorted, gt_list, strict=True)),
                          lambda f: imread(f).astype(np.float32) / 255.0, 1.2, uniform=True, old_skimage=True)
    out = _summary(per, distorted, lp)
    out.update(fid=frechet_from_activations(real, gen))
    out["n"].update(fid=len(gen), fid_real=len(real))
    return out


# ---------------------------------------------------------------------------------------------- PCDMs


def pcdms(gen_dir: Path, gt_dir: Path, real_dir: Path, inception: nn.Module, lpips_model: nn.Module,
          img_size: tuple[int, int]) -> dict:
    """PCDMs `caculate_metrics_{256,512}.py` with `metrics.py`: every image `cv2.resize(float32, img_size,
    INTER_CUBIC)`; FID batch 128, LPIPS batch 64 on [0, 1] without normalize; `ssim_256` with sigma 1.2."""
    import cv2

    def resized(fn: Path) -> np.ndarray:
        return cv2.resize(imread(fn).astype(np.float32), img_size, interpolation=cv2.INTER_CUBIC)

    def fid_imgs(folder: Path) -> np.ndarray:
        imgs = np.array([resized(fn) for fn in _listing(folder)]) / 255.0
        return imgs.transpose((0, 3, 1, 2))

    real = _ttur_activations(fid_imgs(real_dir), inception, 128)
    gen = _ttur_activations(fid_imgs(gen_dir), inception, 128)
    gt_list, distorted = [], []
    for distorted_image in _listing_sorted(gen_dir):  # preprocess_path_for_deform_task
        image = distorted_image.name[1:].split("_to_")[-1]
        gt_image = Path(str(gt_dir) + "/" + image.replace("jpg", "png"))
        if gt_image.is_file():
            gt_list.append(gt_image)
            distorted.append(distorted_image)
    lp = _lpips_batches(distorted, gt_list, lambda f: resized(f) / 255.0, lpips_model)
    per = _reconstruction(list(zip(distorted, gt_list, strict=True)), lambda f: resized(f) / 255.0, 1.2,
                          uniform=False, old_skimage=False)
    out = _summary(per, distorted, lp)
    out.update(fid=frechet_from_activations(real, gen))
    out["n"].update(fid=len(gen), fid_real=len(real))
    return out


# ---------------------------------------------------------------------------------------------- CFLD


def cfld(pairs: list[tuple[Path, Path]], real_dir: Path, inception: nn.Module, lpips_model: nn.Module,
         size: tuple[int, int], batch_size: int = 16) -> dict:
    """CFLD `pose_transfer_test.eval` + `build_metric`: `pairs` are (generated sample file, high-res target) in
    the pair CSV's order; the samples stand for the decoded [0, 1] samples (here 8-bit PNGs / 255)."""
    from torchvision import transforms

    transform_test = transforms.Compose([
        transforms.Resize(list(size), interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
        transforms.ToTensor()])

    def open_rgb(p: Path) -> Image.Image:
        with open(p, "rb") as f:
            return Image.open(f).convert("RGB")

    preds_out, lpips_all, rows = [], [], {}
    for lo in range(0, len(pairs), batch_size):
        chunk = pairs[lo:lo + batch_size]
        gt_imgs = torch.stack([transform_test(open_rgb(t)) for _, t in chunk])
        sampling_imgs = torch.stack([torch.from_numpy(imread(g).copy()).permute(2, 0, 1).float() / 255.0
                                     for g, _ in chunk])
        sampling_imgs = F.interpolate(sampling_imgs, tuple(gt_imgs.shape[2:]), mode="bicubic", antialias=True)
        sampling_imgs = sampling_imgs.float() * 255.0
        sampling_imgs = sampling_imgs.clamp(0, 255).to(dtype=torch.uint8)
        sampling_imgs = sampling_imgs.to(torch.float32) / 255.
        gt, pred = gt_imgs, sampling_imgs
        preds_out.append(cfld_forward_inception(inception, pred.clone()))
        with torch.no_grad():
            lpips_all.extend(lpips_model(pred, gt, normalize=True).reshape(-1).tolist())
        for i, (g, _) in enumerate(chunk):  # scikit-image 0.20, channel_axis=0 on the CHW float32 tensors
            img_gt, img_pred = gt[i].numpy(), pred[i].numpy()
            rows[g.name] = {"psnr": float(compare_psnr(img_gt, img_pred, data_range=1)),
                            **_ssims(img_gt, img_pred, 1.5, uniform=True, old_skimage=False, channel_axis=0)}
    real_files = [Path(p) for p in __import__("glob").glob(os.path.join(real_dir, "*.jpg"))]
    gt_out = []
    for lo in range(0, len(real_files), batch_size):
        batch = torch.stack([transform_test(open_rgb(p)) for p in real_files[lo:lo + batch_size]])
        gt_out.append(cfld_forward_inception(inception, batch))
    gt_out_gathered, pred_out_gathered = np.concatenate(gt_out), np.concatenate(preds_out)
    out = _summary(rows, [g for g, _ in pairs], lpips_all)
    out.update(fid=frechet_from_activations(gt_out_gathered, pred_out_gathered))
    out["n"].update(fid=len(pred_out_gathered), fid_real=len(gt_out_gathered))
    return out


# ---------------------------------------------------------------------------------------------- clean


def clean(pairs: list[tuple[Path, Path]], real_dir: Path, inception: nn.Module, lpips_model: nn.Module,
          masks: dict[str, np.ndarray] | None = None, cleanfid_sqrtm: bool = False) -> dict:
    """posebench's clean standard as its references compute it: `pairs` are (generated file, ground truth at the
    protocol size); SSIM = skimage Gaussian sigma 1.5, population covariance, data range 255 on uint8; PSNR =
    skimage with data range 255; LPIPS = lpips on `im2tensor` ([-1, 1]); FID = clean-fid (`clean` resize: PIL
    bicubic on float32 per channel to 299, clipped; pytorch-FID input x/255 -> 2x-1; mean/cov; its
    `frechet_distance` when `cleanfid_sqrtm`, else `frechet_from_activations`). `masks` (generated name -> bool
    mask): PATN mask-SSIM (uint8 images times the mask) and GFLA mask-LPIPS (`(img / 127.5 - 1) * mask`)."""
    import lpips
    from cleanfid.resize import make_resizer

    rows: dict[str, dict[str, float]] = {}
    for gen, gt in pairs:
        p, g = imread(gen), imread(gt)
        with torch.no_grad():
            d = lpips_model(lpips.im2tensor(p), lpips.im2tensor(g))
        rows[gen.name] = {
            "ssim": float(compare_ssim(g, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=255, channel_axis=2)),
            "psnr": float(compare_psnr(g, p, data_range=255)),
            "lpips": float(d.reshape(-1)[0]),
        }
        if masks is not None:
            m = masks[gen.name]
            pm, gm = p * m[..., None].astype(np.uint8), g * m[..., None].astype(np.uint8)
            rows[gen.name]["ssim_masked"] = float(compare_ssim(gm, pm, gaussian_weights=True, sigma=1.5,
                                                               use_sample_covariance=False, data_range=255,
                                                               channel_axis=2))
            a = (p.astype(np.float32) / 127.5 - 1) * m[..., None]
            b = (g.astype(np.float32) / 127.5 - 1) * m[..., None]
            with torch.no_grad():
                rows[gen.name]["lpips_masked"] = float(lpips_model(
                    torch.from_numpy(a.transpose(2, 0, 1))[None], torch.from_numpy(b.transpose(2, 0, 1))[None]))
    resize = make_resizer("PIL", False, "bicubic", (299, 299))

    def feats(files: list[Path]) -> np.ndarray:
        out = []
        for f in files:
            x = torch.from_numpy(resize(imread(f)).transpose(2, 0, 1))[None]  # float32 CHW, not rescaled
            x = x / 255  # feature_extractor("pytorch_inception") model_fn
            x = 2 * x - 1  # InceptionV3.forward, normalize_input
            with torch.no_grad():
                out.append(_blocks(inception)(x).reshape(1, -1).numpy())
        return np.concatenate(out)

    from cleanfid.fid import frechet_distance as cleanfid_frechet

    g_feats, r_feats = feats([g for g, _ in pairs]), feats(sorted(real_dir.iterdir()))
    if cleanfid_sqrtm:
        mu1, s1 = np.mean(g_feats, axis=0), np.cov(g_feats, rowvar=False)
        mu2, s2 = np.mean(r_feats, axis=0), np.cov(r_feats, rowvar=False)
        with warnings.catch_warnings():  # clean-fid passes scipy's deprecated `disp`
            warnings.simplefilter("ignore", DeprecationWarning)
            fid = float(cleanfid_frechet(mu1, s1, mu2, s2))
    else:
        fid = frechet_from_activations(g_feats, r_feats)
    out: dict = {"per_image": rows, "n": {"fid": len(g_feats), "fid_real": len(r_feats)}, "fid": fid}
    for metric in rows[next(iter(rows))]:
        out[metric] = float(np.mean([r[metric] for r in rows.values()]))
        out["n"][metric] = len(rows)
    return out


# ---------------------------------------------------------------------------------------------- Inception Score


def inception_score_of(inception: nn.Module, images: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """PATN `get_inception_score` (10 splits of consecutive images, exp of the mean KL to the split's marginal)
    on (N, H, W, 3) uint8 images, with posebench's stated network input: x / 255, bilinear 299x299, 2x - 1,
    the trunk and `fc`, softmax."""
    from scipy.special import rel_entr, softmax

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        logits = inception.fc(_blocks(inception)(2 * x - 1).flatten(1)).double().numpy()
    p = softmax(logits, axis=1)
    n = len(p)
    scores = [np.exp(np.mean([rel_entr(row, part.mean(axis=0)).sum() for row in part]))
              for part in (p[i * n // splits:(i + 1) * n // splits] for i in range(splits))]
    return float(np.mean(scores)), float(np.std(scores))
