"""RePoseSD's training and sampling items: image, prompt, HumanSD pose image and the people's keypoints.

Records come from `posebench.datasets.humansd` (HumanSD's mapping files with pose `.npz` files, or Human-Art's own
captions). Each image is resized to cover the model's size and centre-cropped, the frame of `humanart-val`'s clean
targets (`posebench.humanart_targets.target_frame`), so training, sampling and scoring see one frame. (HumanSD
resizes the smallest side to 512 and crops 512 at random; the crop is centred here so that an item is a function of
its index, which the trainer's exact resume needs.) The keypoints follow the same transform. Every pose file is read
and checked against its image when the dataset is built, so a bad file stops the run before step 1 with its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from posebench.datasets import humansd
from posebench.datasets.problems import ProblemLog
from posebench.humanart_targets import TargetFrame, target_frame
from posebench.images import read_rgb


@dataclass(frozen=True)
class TextPoseSource:
    """Where text-image-pose items come from: "humansd" (mapping files + pose/) or "humanart" (captions)."""

    dataset: str
    root: Path
    split: str


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


class TextPoseDataset(Dataset):
    """Items: `image` (3, H, W) in [0, 1], `pose_image` (3, H, W) in [0, 1] (HumanSD's skeleton), `people_xy`
    (P, 17, 2) and `people_visible` (P, 17) with P = 10 slots (unused slots invisible), `prompt` (str), `index`."""

    def __init__(self, source: TextPoseSource, resolution: tuple[int, int], pose_threshold: float = 0.02) -> None:
        self.source = source
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.pose_threshold = pose_threshold
        self.records = humansd.read_records(source.dataset, Path(source.root), source.split)
        self.people = self._check_people()

    def _check_people(self) -> list[np.ndarray]:
        """Every record's people, read and checked once: at most 10 people, keypoints inside their image."""
        log = ProblemLog()
        out: list[np.ndarray] = []
        for rec in self.records:
            try:
                people = humansd.read_pose_file(rec.pose_file) if rec.pose_file is not None else rec.people
            except humansd.PoseFileError as exc:
                log.error(rec.pose_file, None, str(exc).split(": ", 1)[-1], f"listed at {rec.source}")
                out.append(np.zeros((0, humansd.NUM_JOINTS, 3)))
                continue
            where = rec.pose_file or rec.source
            if len(people) > humansd.MAX_PEOPLE:
                if rec.pose_file is not None:  # HumanSD's own files: the format holds 10
                    log.error(where, None, f"{len(people)} people; HumanSD's pose format holds at most "
                              f"{humansd.MAX_PEOPLE}", "remove the extra detections (HumanSD's loader silently "
                              "keeps the first 10)")
                else:  # annotated crowds (Human-Art): the first 10, as HumanSD's loader keeps them
                    log.warning(where, None, f"{len(people)} annotated people; the first {humansd.MAX_PEOPLE} "
                                "condition the model (HumanSD's limit)")
                    people = people[: humansd.MAX_PEOPLE]
            try:
                h, w = _image_size(rec.image)
            except (OSError, ValueError) as exc:  # missing, unreadable, not an image
                log.error(rec.image, None, f"cannot read the image ({exc})", f"listed at {rec.source}")
                out.append(people)
                continue
            present = people[..., 2] > self.pose_threshold
            xy = people[..., :2][present]
            # a keypoint may sit on the border pixel; 2 % of the size allows for detector overshoot
            margin = 0.02 * max(h, w)
            outside = (xy[:, 0] < -margin) | (xy[:, 1] < -margin) | (xy[:, 0] > w + margin) | (xy[:, 1] > h + margin)
            if outside.any():
                x, y = xy[outside][0]
                log.error(where, None, f"{int(outside.sum())} keypoints outside its image {rec.image} of {w}x{h}, "
                          f"e.g. ({x:.0f}, {y:.0f}): the pose file does not match the image", f"listed at {rec.source}")
            out.append(people)
        log.raise_if_errors(f"{self.source.dataset} root {self.source.root} ({self.source.split})")
        return out

    def __len__(self) -> int:
        return len(self.records)

    def _image(self, path: Path) -> tuple[torch.Tensor, TargetFrame]:
        from PIL import Image

        img = read_rgb(path)
        frame = target_frame(img.shape[0], img.shape[1], self.resolution)
        rw, rh = round(img.shape[1] * frame.scale_x), round(img.shape[0] * frame.scale_y)
        resized = np.asarray(Image.fromarray(img).resize((rw, rh), Image.BICUBIC))
        h, w = self.resolution
        crop = resized[frame.offset_y: frame.offset_y + h, frame.offset_x: frame.offset_x + w]
        return torch.from_numpy(np.array(crop)).permute(2, 0, 1).float() / 255.0, frame

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        image, frame = self._image(rec.image)
        people = self.people[i].copy()
        people[..., :2] = frame.to_frame(people[..., :2])
        # joints the crop cut off are neither drawn nor guided (HumanSD drops them with the crop: remove_invisible)
        people[..., 2] = np.where(frame.inside(people[..., :2]), people[..., 2], 0.0)
        pose = humansd.pose_image(people, self.resolution, threshold=self.pose_threshold)
        slots = np.zeros((humansd.MAX_PEOPLE, humansd.NUM_JOINTS, 3))
        slots[: len(people)] = people
        visible = slots[..., 2] > self.pose_threshold
        return {"index": i, "image": image, "pose_image": torch.from_numpy(pose).permute(2, 0, 1).float() / 255.0,
                "people_xy": torch.from_numpy(slots[..., :2]).float(), "people_visible": torch.from_numpy(visible),
                "prompt": rec.prompt}


def collate_text_pose(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], str):
            out[key] = values
        else:
            out[key] = torch.tensor(values)
    return out
