"""RePoseSD (paper sec. 4.4): Stable Diffusion 2.1 fine-tuned on text-image-pose data with the pose field's
gradient guidance (eq. 15 / 17), and its baseline HumanSD (the same fine-tuning without it). docs/model.md."""
