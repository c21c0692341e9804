"""CLIPSIM (`posebench eval --protocol humanart-val --metrics clipsim`) on a synthetic Human-Art root, with a tiny
randomly initialised CLIP (built here from a `CLIPConfig`, character tokenizer) given as `--clip-weights DIR`.

The numbers are checked against computations made here without posebench:
- `clean`: CLIPModel called directly, the image resized with PIL bicubic to 224x224 and normalised here (the
  synthetic images are square: no crop), the prompt truncated by the tokenizer to 77 tokens (end-of-text kept);
  100 * max(cos, 0) per image, mean over images.
- `humansd`: torchmetrics' functional `clip_score` (the function behind HumanSD's `CLIPScore`) on each batch of 10
  images in file order, which clamps the batch mean at 0 and cuts long prompts at 77 token ids; mean over batches.
Tolerance 1e-4 in CLIP-score units (0..100): torchmetrics normalises and multiplies in float32, posebench in float64
(measured on these images: values 3e-8 (clean) and 1.6e-6 (humansd), per image 1.5e-5).

With the character tokenizer every synthetic description is longer than 77 tokens, and the random CLIP gives both
signs of cosine, so the two computations differ here (truncation and clamping both matter).
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from posebench.cli import app
from posebench.results.schema import read_results

runner = CliRunner()
TOL = 1e-4
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


def _tiny_clip() -> tuple[torch.nn.Module, object]:
    """A randomly initialised CLIP (2 layers, width 32, 224x224 input, 77 tokens) and a character tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from reposedm.sd.components import character_vocabulary

    vocab = character_vocabulary()
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": vocab["<|startoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"], "eos_token_id": 2}  # legacy 2: pooled at the largest id
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": 224, "patch_size": 32}
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    return model, CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _write_tokenizer(folder, tokenizer) -> None:
    (folder / "vocab.json").write_text(json.dumps(tokenizer.get_vocab()))
    (folder / "merges.txt").write_text("#version: 0.2\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic Human-Art (2 validation images in each of the 19 scenarios), generated copies as
    {scenario}/{stem}.png, and the tiny CLIP saved in the Hugging Face layout."""
    from posebench.datasets.synth import synthesize

    base = tmp_path_factory.mktemp("clipsim")
    root = base / "ha"
    synthesize("humanart", root, identities=2, poses=19, size=(128, 128), seed=1, progress=False)
    gt = json.loads((root / "annotations" / "validation_humanart.json").read_text())
    pred = base / "pred"
    prompts = {}
    for im in gt["images"]:
        src = root / im["file_name"].removeprefix("HumanArt/")
        (pred / src.parent.name).mkdir(parents=True, exist_ok=True)
        Image.open(src).save(pred / src.parent.name / f"{src.stem}.png")
        prompts[f"{src.parent.name}/{src.stem}"] = im["description"]
    model, tokenizer = _tiny_clip()
    clip = base / "clip"
    model.save_pretrained(clip)
    _write_tokenizer(clip, tokenizer)
    return {"root": root, "pred": pred, "prompts": prompts, "clip": clip, "model": model, "tokenizer": tokenizer}


def _eval(world, out, *extra: str):
    return runner.invoke(app, ["eval", "--protocol", "humanart-val", "--root", str(world["root"]), "--pred",
                               str(world["pred"]), "--out", str(out), "--quiet", *extra])


def _rows(out) -> list[dict]:
    with open(out.with_suffix(".per_image.csv"), newline="") as fh:
        return list(csv.DictReader(fh))


def _direct_scores(world, keys: list[str], *, cut: bool) -> np.ndarray:
    """100 * cos per image, CLIPModel called directly (one batch) on inputs prepared here: PIL bicubic to 224x224,
    CLIP's mean and std; prompts truncated by the tokenizer (end-of-text kept) or, `cut`, their ids cut at 77."""
    model, tok = world["model"], world["tokenizer"]
    x = np.stack([np.asarray(Image.open(world["pred"] / f"{k}.png").convert("RGB").resize((224, 224), Image.BICUBIC),
                             dtype=np.float64) / 255 for k in keys])
    pixels = torch.from_numpy(((x - CLIP_MEAN) / CLIP_STD).transpose(0, 3, 1, 2)).float()
    prompts = [world["prompts"][k] for k in keys]
    if cut:
        enc = tok(prompts, padding=True, return_tensors="pt", verbose=False)
        ids, mask = enc["input_ids"][:, :77], enc["attention_mask"][:, :77]
    else:
        enc = tok(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        assert (ids[:, -1] == tok.eos_token_id).all()  # every prompt truncated, the end-of-text token kept
    with torch.no_grad():
        e_img = model.get_image_features(pixel_values=pixels).pooler_output.double()
        e_txt = model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output.double()
    return 100 * torch.nn.functional.cosine_similarity(e_img, e_txt).numpy()


class _TorchmetricsCLIP(torch.nn.Module):
    """torchmetrics expects `get_*_features` to return tensors; transformers 5 returns them as `pooler_output`."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, pixel_values):
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output

    def get_text_features(self, input_ids, attention_mask):
        return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


def _torchmetrics_score(world, keys: list[str]) -> float:
    """torchmetrics' clip_score of a batch (HumanSD's CLIPScore.forward): max(mean of 100 * cos, 0)."""
    import warnings

    from torchmetrics.functional.multimodal import clip_score
    from transformers import CLIPProcessor

    from posebench.metrics.clipsim import image_processor

    processor = CLIPProcessor(image_processor=image_processor(), tokenizer=world["tokenizer"])
    images = [torch.from_numpy(np.array(Image.open(world["pred"] / f"{k}.png").convert("RGB"))).permute(2, 0, 1)
              for k in keys]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Encountered caption longer than max_position_embeddings=77"
        score = clip_score(images, [world["prompts"][k] for k in keys],
                           lambda: (_TorchmetricsCLIP(world["model"]), processor))
    return float(score.detach())


def test_clean_matches_clip_called_directly(world, tmp_path):
    out = tmp_path / "res.json"
    r = _eval(world, out, "--metrics", "clipsim", "--clip-weights", str(world["clip"]), "--batch-size", "64")
    assert r.exit_code == 0, r.output
    res = read_results(out)
    rows = _rows(out)
    keys = [row["key"] for row in rows]
    assert keys == sorted(world["prompts"])
    ref = np.maximum(_direct_scores(world, keys, cut=False), 0)
    assert (ref == 0).any() and (ref > 0).any()  # the random CLIP gives both signs: the clamp matters
    entry = res["metrics"]["clipsim"]
    assert entry["value"] == pytest.approx(ref.mean(), abs=TOL)
    assert [float(row["clipsim"]) for row in rows] == pytest.approx(ref.tolist(), abs=TOL)
    assert entry["n"] == 38 and entry["higher_is_better"] is True
    details = entry["details"]
    assert details["profile"] == "clean" and details["aggregation"] == "dataset" and details["long_prompt_count"] == 38
    for scenario, row in res["breakdown"]["rows"].items():
        mine = [i for i, k in enumerate(keys) if k.startswith(f"{scenario}/")]
        assert row["clipsim"] == pytest.approx(ref[mine].mean(), abs=TOL)
    assert res["env"]["clip"]["model"] == "user files"
    assert any("CLIPSIM from the CLIP files" in why for why in res["non_canonical_reasons"])
    assert any("clipsim: 38 prompts are longer" in w for w in res["warnings"])


def test_humansd_matches_torchmetrics_per_batch(world, tmp_path):
    out = tmp_path / "res.json"
    r = _eval(world, out, "--metrics", "clipsim", "--clip-weights", str(world["clip"]), "--profile", "humansd",
              "--batch-size", "64")
    assert r.exit_code == 0, r.output
    res = read_results(out)
    rows = _rows(out)
    keys = [row["key"] for row in rows]
    batches = [_torchmetrics_score(world, keys[i:i + 10]) for i in range(0, len(keys), 10)]  # 10, 10, 10, 8
    entry = res["metrics"]["clipsim"]
    assert entry["value"] == pytest.approx(np.mean(batches), abs=TOL)
    assert entry["details"]["n_batches"] == 4 and entry["details"]["clamp"] == "per batch: max(batch mean, 0)"
    raw = _direct_scores(world, keys, cut=True)  # unclamped 100 * cos, prompts cut at 77 token ids
    assert (raw < 0).any() and [max(float(np.mean(raw[i:i + 10])), 0) for i in range(0, 38, 10)] == \
        pytest.approx(batches, abs=TOL)
    assert [float(row["clipsim"]) for row in rows] == pytest.approx(raw.tolist(), abs=TOL)
    for scenario, row in res["breakdown"]["rows"].items():  # one batch: the scenario's 2 images
        mine = [i for i, k in enumerate(keys) if k.startswith(f"{scenario}/")]
        assert row["clipsim"] == pytest.approx(max(raw[mine].mean(), 0), abs=TOL)
    assert abs(entry["value"] - np.maximum(_direct_scores(world, keys, cut=False), 0).mean()) > 0.1  # they differ


def test_registry_files_load_as_the_folder_does(world, tmp_path):
    """The registry path: a `pytorch_model.bin` state dict (with the position-id buffers old checkpoints carry) and
    config/tokenizer files added to the cache give the numbers of the same network loaded from a folder."""
    from posebench import weights
    from posebench.metrics.clipsim import SETTINGS, WEIGHT_FILES, clip_scores, load_clip, resize_crop_4_19

    state = dict(world["model"].state_dict())
    state["text_model.embeddings.position_ids"] = torch.arange(77)[None]
    torch.save(state, tmp_path / "pytorch_model.bin")
    for role, src in (("model", tmp_path / "pytorch_model.bin"), ("config", world["clip"] / "config.json"),
                      ("vocab", world["clip"] / "vocab.json"), ("merges", world["clip"] / "merges.txt")):
        weights.add_local_file(WEIGHT_FILES[role], src, trust=True)
    net, folder_net = load_clip(), load_clip(world["clip"])
    assert net.weights_registry_name == "clip-vit-b16-model" and folder_net.weights_registry_name is None
    keys = sorted(world["prompts"])[:3]
    images = [np.asarray(Image.open(world["pred"] / f"{k}.png").convert("RGB")) for k in keys]
    prompts = [world["prompts"][k] for k in keys]
    for settings in SETTINGS.values():
        assert clip_scores(net, images, prompts, settings)[0].tolist() == \
            clip_scores(folder_net, images, prompts, settings)[0].tolist()
    # transformers 4.19's centre crop (HumanSD) rounds an odd overhang up, transformers 5's down
    wide = np.random.default_rng(0).integers(0, 256, (224, 299, 3), dtype=np.uint8)
    assert np.array_equal(resize_crop_4_19(wide, 224), wide[:, 38:262])
    assert np.array_equal(net.image_processor(images=[wide], return_tensors="np", do_normalize=False,
                                              do_rescale=False)["pixel_values"][0].transpose(1, 2, 0), wide[:, 37:261])


def test_missing_weights_offline_name_the_files(world, tmp_path, monkeypatch):
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    r = _eval(world, tmp_path / "res.json", "--metrics", "clipsim")
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert "clip-vit-base-patch16-pytorch_model.bin" in text
    assert "posebench weights download clip-vit-b16-model clip-vit-b16-config" in text
    assert not (tmp_path / "res.json").exists()


def test_bad_inputs_are_refused(world, tmp_path):
    r = runner.invoke(app, ["eval", "--pred", str(world["pred"]), "--gt", str(world["pred"]), "--metrics", "clipsim",
                            "--out", str(tmp_path / "f.json")])
    assert r.exit_code == 2 and "no prompts" in " ".join(r.output.split())
    r = _eval(world, tmp_path / "a.json", "--metrics", "ap", "--clip-weights", str(world["clip"]))
    assert r.exit_code == 2 and "--clip-weights applies to the metric clipsim" in " ".join(r.output.split())
    partial = tmp_path / "partial"
    shutil.copytree(world["clip"], partial)
    (partial / "merges.txt").unlink()
    r = _eval(world, tmp_path / "b.json", "--metrics", "clipsim", "--clip-weights", str(partial))
    assert r.exit_code == 2 and "has no merges.txt" in " ".join(r.output.split())
    # a validation image without its caption: named, with the annotation file
    root = tmp_path / "ha"
    shutil.copytree(world["root"] / "annotations", root / "annotations")
    (root / "images").symlink_to(world["root"] / "images")
    ann = json.loads((root / "annotations" / "validation_humanart.json").read_text())
    del ann["images"][0]["description"]
    (root / "annotations" / "validation_humanart.json").write_text(json.dumps(ann))
    r = runner.invoke(app, ["eval", "--protocol", "humanart-val", "--root", str(root), "--pred", str(world["pred"]),
                            "--out", str(tmp_path / "c.json"), "--metrics", "clipsim", "--clip-weights",
                            str(world["clip"])])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "validation_humanart.json" in text and "have no description" in text
