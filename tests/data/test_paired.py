"""Paired sources: matching stems / sidecar / dataset columns, one crop box for every field."""

import numpy as np
import pytest
import torch
from PIL import Image

from fsqtok.data import (Box, DataError, Field, PairedDataset, PairedFolderSource, PairedHFSource, collate,
                         fit_spatial, read_label_map)
from fsqtok.media import MediaError, write_depth, write_image


def _scene(h=12, w=16):
    """An image whose colour encodes the pixel position, a depth ramp with invalid pixels, a label map."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    image = torch.stack([yy / (h - 1), xx / (w - 1), torch.zeros(h, w)]) * 2 - 1
    depth = (1.0 + xx.float() * 0.25)[None].clone()  # metres; 4 mm steps survive 16-bit PNG exactly
    depth[:, :, 3] = float("nan")  # one invalid column
    label = (xx // 4 + 10 * (yy // 6)).long()
    return image, depth, label


def _write_folder(root, n=3, h=12, w=16):
    for i in range(n):
        image, depth, label = _scene(h, w)
        (root / "image" / "a").mkdir(parents=True, exist_ok=True)
        (root / "depth" / "a").mkdir(parents=True, exist_ok=True)
        (root / "semantic" / "a").mkdir(parents=True, exist_ok=True)
        write_image(root / "image" / "a" / f"{i:03d}.png", image)
        write_depth(root / "depth" / "a" / f"{i:03d}.png", depth)
        Image.fromarray(label.numpy().astype(np.uint16)).save(root / "semantic" / "a" / f"{i:03d}.png")


FIELDS = [Field("image", "image"), Field("depth", "depth"), Field("semantic", "label")]


def test_folder_pairs_by_stem_and_fits_every_field_with_one_box(tmp_path):
    _write_folder(tmp_path)
    src = PairedFolderSource(tmp_path, FIELDS, labels="folder")
    assert src.keys == ["a/000", "a/001", "a/002"]
    ds = PairedDataset(src, size=8, crop="random", min_scale=0.5, flip=True, seed=1)
    seen_flip = False
    for i in range(len(ds)):
        item = ds[i]
        assert item["key"] == src.keys[i] and item["label"] == "a"
        assert item["image"].shape == (3, 8, 8) and item["depth"].shape == (1, 8, 8)
        assert item["semantic"].shape == (8, 8) and item["semantic"].dtype == torch.int64
        raw, _ = src.load(i)
        box = ds.box(i, 12, 16)
        seen_flip |= box.flip
        # the same box for every field, each resized by its kind
        assert torch.equal(item["semantic"], fit_spatial(raw["semantic"], 8, "label", box))
        assert torch.equal(item["depth"], fit_spatial(raw["depth"], 8, "depth", box), ) or torch.allclose(
            item["depth"], fit_spatial(raw["depth"], 8, "depth", box), equal_nan=True)
        # label ids and depth values are never blended: every output value exists in the input
        assert set(item["semantic"].unique().tolist()) <= set(raw["semantic"].unique().tolist())
        valid = raw["depth"][torch.isfinite(raw["depth"])]
        out = item["depth"][torch.isfinite(item["depth"])]
        assert all(bool((valid == v).any()) for v in out)
        # the image's colour encodes position: its column coordinate agrees with the label map's column
        col_from_image = ((item["image"][1] + 1) / 2 * 15).round().long()
        assert (col_from_image // 4 == item["semantic"] % 10).float().mean() > 0.9
    assert seen_flip
    batch = collate([ds[0], None, ds[1]])
    assert batch["failed"] == 1 and batch["key"] == ["a/000", "a/001"] and batch["image"].shape == (2, 3, 8, 8)


def test_random_crops_depend_on_seed_epoch_index_only(tmp_path):
    _write_folder(tmp_path)
    a = PairedDataset(PairedFolderSource(tmp_path, FIELDS), size=6, crop="random", min_scale=0.5, seed=3)
    b = PairedDataset(PairedFolderSource(tmp_path, FIELDS), size=6, crop="random", min_scale=0.5, seed=3)
    assert [a.box(i, 12, 16) for i in range(3)] == [b.box(i, 12, 16) for i in range(3)]
    b.set_epoch(1)
    assert [a.box(i, 12, 16) for i in range(3)] != [b.box(i, 12, 16) for i in range(3)]


def test_center_crop_keeps_invalid_depth_invalid():
    _, depth, _ = _scene()
    out = fit_spatial(depth, 6, "depth")
    assert torch.isnan(out).any() and torch.isfinite(out).any()
    assert fit_spatial(depth, 12, "depth", Box.center(12, 16)).shape == (1, 12, 12)


def test_incomplete_or_ambiguous_stems_are_refused(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "depth" / "a" / "001.png").unlink()
    with pytest.raises(DataError, match=r"'a/001' has no depth"):
        PairedFolderSource(tmp_path, FIELDS)
    _write_folder(tmp_path)
    write_image(tmp_path / "image" / "a" / "000.jpg", _scene()[0])
    with pytest.raises(DataError, match="same stem"):
        PairedFolderSource(tmp_path, FIELDS)


def test_sidecar_pairs_and_labels(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "pairs.csv").write_text("image,depth,semantic,label\n"
                                        "image/a/002.png,depth/a/002.png,semantic/a/002.png,x\n"
                                        "image/a/000.png,depth/a/001.png,semantic/a/000.png,\n")
    src = PairedFolderSource(tmp_path, FIELDS, sidecar=tmp_path / "pairs.csv")
    assert src.keys == ["image/a/000", "image/a/002"]
    assert src.labels == {"image/a/002": "x", "image/a/000": None}
    fields, _ = src.load(0)
    assert fields["semantic"].shape == (12, 16)


def test_fields_of_different_sizes_fail_that_sample(tmp_path):
    _write_folder(tmp_path)
    write_depth(tmp_path / "depth" / "a" / "001.png", torch.ones(1, 6, 8))
    ds = PairedDataset(PairedFolderSource(tmp_path, FIELDS), size=4)
    with pytest.warns(UserWarning, match="a/001: fields differ in size"):
        assert ds[1] is None
    assert ds[0] is not None


def test_hf_columns(tmp_path):
    import datasets

    _write_folder(tmp_path, n=2)
    rows = {"rgb": [str(tmp_path / "image" / "a" / f"{i:03d}.png") for i in range(2)],
            "depth": [str(tmp_path / "depth" / "a" / f"{i:03d}.png") for i in range(2)],
            "seg": [_scene()[2].numpy().tolist() for _ in range(2)], "cls": [0, 1]}
    ds = datasets.Dataset.from_dict(rows).cast_column("rgb", datasets.Image()).cast_column(
        "cls", datasets.ClassLabel(names=["indoor", "outdoor"]))
    src = PairedHFSource(ds, FIELDS, columns={"image": "rgb", "semantic": "seg"}, label_column="cls")
    folder = PairedFolderSource(tmp_path, FIELDS)
    item, ref = PairedDataset(src, size=8)[1], PairedDataset(folder, size=8)[1]
    assert item["label"] == "outdoor" and item["key"] == "0000000001"
    for name in ("image", "semantic"):
        assert torch.equal(item[name], ref[name])
    assert torch.allclose(item["depth"], ref["depth"], equal_nan=True)
    with pytest.raises(DataError, match="no column nope"):
        PairedHFSource(ds, {"image": "image"}, columns={"image": "nope"})


def test_read_label_map_kinds(tmp_path):
    ids = np.array([[0, 1], [2, 300]], dtype=np.uint16)
    Image.fromarray(ids).save(tmp_path / "a.png")
    assert read_label_map(tmp_path / "a.png").tolist() == [[0, 1], [2, 300]]
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 1] = (1, 2, 3)  # COCO panoptic id = R + 256 G + 256^2 B
    Image.fromarray(rgb).save(tmp_path / "p.png")
    assert read_label_map(tmp_path / "p.png").tolist() == [[0, 1 + 2 * 256 + 3 * 65536]]
    np.save(tmp_path / "f.npy", np.ones((2, 2), np.float32) * 0.5)
    with pytest.raises(Exception, match="f.npy: label maps hold integer ids"):
        read_label_map(tmp_path / "f.npy")


def test_label_map_with_a_huge_declared_size_is_refused_in_one_line(tmp_path, png_declaring):
    """Label maps go through the media layer's pixel limit like every image (no decompression bomb)."""
    import warnings

    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(10000, 10000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MediaError, match=r"^bomb.png: declares .* pixels, over the limit"):
            read_label_map(path)
