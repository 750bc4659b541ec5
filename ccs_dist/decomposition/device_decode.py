"""JPEG decoding and preprocessing on the model's device: workers only read the files' bytes.

``torchvision.io.decode_jpeg`` decodes a whole micro-batch in one call (nvJPEG on CUDA); each image is then
resized, cropped and normalised there with the same torchvision transforms as open_clip's preprocess
(Resize with antialiasing, CenterCrop, Normalize), on the uint8 image as the PIL path does. Files that are
not JPEG, or that the device decoder refuses (e.g. CMYK), go through the CPU path unchanged; the pixel
limit is checked from the header either way. Results agree with the PIL path to within resampling rounding.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ccs_dist.core.errors import UserError
from ccs_dist.data.images import ImageSet, check_pixels

JPEG_SUFFIXES = (".jpg", ".jpeg")
_PASS_THROUGH = {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb"}  # PIL-side steps of the CPU path


@dataclass(frozen=True)
class TensorPreprocess:
    """open_clip's preprocess for a uint8 [C, Y, X] tensor: the spatial steps on uint8, then scale and normalise."""

    spatial: tuple  # torchvision Resize / CenterCrop, applied in order
    normalize: object  # torchvision Normalize

    @classmethod
    def from_transform(cls, transform) -> TensorPreprocess:
        import torchvision.transforms as T

        steps = getattr(transform, "transforms", None)
        if steps is None:
            raise UserError("decoding on the device needs a torchvision Compose preprocess: use decode='cpu' for this model")
        spatial, normalize = [], None
        for step in steps:
            name = getattr(step, "__name__", type(step).__name__)
            if isinstance(step, (T.Resize, T.CenterCrop)) and normalize is None:
                spatial.append(step)
            elif isinstance(step, T.Normalize) and normalize is None:
                normalize = step
            elif name not in _PASS_THROUGH:
                raise UserError(f"decoding on the device does not know the preprocess step {name}: use decode='cpu' for this model")
        if normalize is None:
            raise UserError("decoding on the device needs a Normalize step in the preprocess: use decode='cpu' for this model")
        return cls(tuple(spatial), normalize)

    def __call__(self, image_3WW: torch.Tensor) -> torch.Tensor:
        for step in self.spatial:
            image_3WW = step(image_3WW)
        return self.normalize(image_3WW.float() / 255.0)


class EncodedDataset(torch.utils.data.Dataset):
    """Image ``index`` -> (payload, index, error): a JPEG's bytes (uint8 [n]) to decode on the device, or, for
    other files, the CPU path's preprocessed tensor; ``kind`` tells which ("jpeg" / "pixels" / "" on error)."""

    def __init__(self, image_set: ImageSet, transform):
        self.image_set, self.transform = image_set, transform
        self.paths = getattr(image_set, "paths", None)

    def __len__(self) -> int:
        return len(self.image_set)

    def __getitem__(self, index: int):
        from PIL import Image

        try:
            path = self.paths[index] if self.paths is not None else None
            if path is not None and path.suffix.lower() in JPEG_SUFFIXES:
                with Image.open(path) as im:
                    check_pixels(im)  # header only: a huge file costs no memory
                    if im.format == "JPEG" and im.mode in ("RGB", "L"):
                        return ("jpeg", torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)), index, ""
            return ("pixels", self.transform(self.image_set.load(index))), index, ""
        except Exception as e:  # unreadable or corrupt file: reported, then skipped or fatal by config
            return None, index, f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


def collate_encoded(items):
    """-> (payloads [(kind, tensor)] of the readable items, their indices, [(index, error)] of the others)."""
    good = [(p, i) for p, i, err in items if p is not None]
    bad = [(i, err) for p, i, err in items if p is None]
    return [p for p, _ in good], [i for _, i in good], bad


def decode_on_device(payloads, indices, bad, image_set: ImageSet, transform, prep: TensorPreprocess, device: torch.device):
    """A collated micro-batch -> (images [B, C, Y, X] on ``device`` or None, indices, bad): JPEGs decoded in one
    batched call; one the device decoder refuses is decoded by the CPU path instead."""
    from torchvision.io import ImageReadMode, decode_jpeg

    out: list[torch.Tensor | None] = [None] * len(payloads)
    jpeg_at = [j for j, (kind, _) in enumerate(payloads) if kind == "jpeg"]
    for j, (kind, value) in enumerate(payloads):
        if kind == "pixels":
            out[j] = value.to(device, non_blocking=device.type == "cuda")
    if jpeg_at:
        data = [payloads[j][1] for j in jpeg_at]
        try:
            decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # one bad file fails the batched call: decode one by one
            decoded = []
            for d in data:
                try:
                    decoded.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    decoded.append(None)
        for j, image in zip(jpeg_at, decoded):
            out[j] = prep(image) if image is not None else None
    keep_images, keep_indices = [], []
    for j, image in enumerate(out):
        if image is None:  # refused by the device decoder: the CPU path decides (decodes it, or reports it bad)
            try:
                image = transform(image_set.load(indices[j])).to(device)
            except Exception as e:
                bad = bad + [(indices[j], f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")]
                continue
        keep_images.append(image)
        keep_indices.append(indices[j])
    return (torch.stack(keep_images) if keep_images else None), keep_indices, bad
