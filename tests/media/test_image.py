"""Image decoding: every integer pixel type at its own full range, alpha, EXIF orientation, grey/RGB,
the pixel limit, and the bytes decoder that must match the file reader exactly."""

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from fsqtok import media
from fsqtok.media import MediaError, decode_image_bytes, read_image


def _png_bytes(im: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=kwargs.pop("format", "PNG"), **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16bit_grey_png_keeps_its_range_and_precision(tmp_path, mode):
    ramp = np.linspace(0, 65535, 16 * 64).round().astype(np.uint16).reshape(16, 64)  # issue 10.3: read as white
    im = Image.frombytes(mode, (64, 16), ramp.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    (tmp_path / "ramp.png").write_bytes(_png_bytes(im))
    expected = torch.from_numpy(ramp.astype(np.float64) / 32767.5 - 1).float()
    grey = read_image(tmp_path / "ramp.png", channels=1)
    assert grey.shape == (1, 16, 64) and grey.dtype == torch.float32
    assert (grey[0] - expected).abs().max() < 1e-6  # full 16-bit precision, not 8-bit steps
    assert grey.min() == -1 and grey.max() == 1 and (grey == 1).float().mean() < 0.01
    rgb = read_image(tmp_path / "ramp.png")
    assert rgb.shape == (3, 16, 64) and torch.equal(rgb, grey.expand(3, -1, -1))
    assert torch.equal(decode_image_bytes((tmp_path / "ramp.png").read_bytes(), channels=1), grey)
    assert torch.equal(decode_image_bytes(_png_bytes(im, format="TIFF"), channels=1), grey)  # TIFF keeps I;16B


def test_int32_pixels_are_16bit_samples_or_refused():
    a = np.array([[0, 32768, 65535]], dtype=np.int32)
    x = decode_image_bytes(_png_bytes(Image.fromarray(a), format="TIFF"), channels=1)
    assert torch.allclose(x[0, 0], torch.tensor([-1.0, 32768 / 32767.5 - 1, 1.0]), atol=1e-6)
    with pytest.raises(MediaError, match=r"^big.tif: 32-bit integer pixels outside the 16-bit range"):
        decode_image_bytes(_png_bytes(Image.fromarray(a * 2), format="TIFF"), name="big.tif")
    with pytest.raises(MediaError, match=r"^f.tif: unsupported pixel type \(Pillow mode F"):
        decode_image_bytes(_png_bytes(Image.new("F", (2, 2)), format="TIFF"), name="f.tif")


def test_one_bit_grey_and_8bit_colour(tmp_path):
    bits = Image.fromarray(np.array([[0, 1, 1, 0]], dtype=bool))
    (tmp_path / "b.png").write_bytes(_png_bytes(bits))
    assert Image.open(tmp_path / "b.png").mode == "1"
    assert read_image(tmp_path / "b.png", channels=1)[0, 0].tolist() == [-1.0, 1.0, 1.0, -1.0]
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    (tmp_path / "c.png").write_bytes(_png_bytes(Image.fromarray(rgb)))
    x = read_image(tmp_path / "c.png")
    assert torch.allclose(x.permute(1, 2, 0), torch.from_numpy(rgb / 127.5 - 1).float(), atol=1e-6)
    luma = read_image(tmp_path / "c.png", channels=1)  # ITU-R 601 at full precision
    expected = (rgb.astype(np.float64) @ [0.299, 0.587, 0.114]) / 127.5 - 1
    assert luma.shape == (1, 1, 4) and np.abs(luma[0].numpy() - expected).max() < 1e-5
    pil_l = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64) / 127.5 - 1
    assert np.abs(luma[0].numpy() - pil_l).max() <= 1 / 255 + 1e-6  # Pillow agrees up to its rounding


def test_alpha_is_composited_over_white():
    la = np.array([[[0, 0], [0, 255], [100, 128]]], dtype=np.uint8)  # transparent black, opaque black, half grey
    x = decode_image_bytes(_png_bytes(Image.fromarray(la, mode="LA")), channels=1)
    a = 128 / 255
    assert torch.allclose(x[0, 0], torch.tensor([1.0, -1.0, 2 * (100 / 255 * a + 1 - a) - 1]), atol=1e-6)
    rgba = np.array([[[255, 0, 0, 0], [0, 0, 255, 255]]], dtype=np.uint8)
    y = decode_image_bytes(_png_bytes(Image.fromarray(rgba, mode="RGBA")))
    assert y[:, 0, 0].tolist() == [1.0, 1.0, 1.0] and y[:, 0, 1].tolist() == [-1.0, -1.0, 1.0]


def test_palette_with_and_without_transparency():
    p = Image.fromarray(np.array([[0, 1, 1]], dtype=np.uint8), mode="P")
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue
    opaque = decode_image_bytes(_png_bytes(p))
    assert opaque[:, 0, 0].tolist() == [1.0, -1.0, -1.0] and opaque[:, 0, 1].tolist() == [-1.0, -1.0, 1.0]
    see_through = decode_image_bytes(_png_bytes(p, transparency=0))  # index 0 transparent -> white
    assert see_through[:, 0, 0].tolist() == [1.0, 1.0, 1.0] and see_through[:, 0, 2].tolist() == [-1.0, -1.0, 1.0]
    pa = Image.merge("PA", (p, Image.fromarray(np.array([[255, 0, 255]], dtype=np.uint8))))  # palette + alpha
    x = decode_image_bytes(_png_bytes(pa, format="TIFF"))
    assert x[:, 0].T.tolist() == [[1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [-1.0, -1.0, 1.0]]


def test_grey_colour_key_transparency():
    im = Image.fromarray(np.array([[7, 200]], dtype=np.uint8))
    x = decode_image_bytes(_png_bytes(im, transparency=7), channels=1)  # tRNS grey key 7 -> white
    assert torch.allclose(x[0, 0], torch.tensor([1.0, 200 / 127.5 - 1]), atol=1e-6)


def test_cmyk_is_converted_to_rgb():
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], dtype=np.uint8)  # white, cyan, black
    x = decode_image_bytes(_png_bytes(Image.fromarray(cmyk, mode="CMYK"), format="TIFF"))
    assert x[:, 0].T.tolist() == [[1.0, 1.0, 1.0], [-1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    rgb = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    path.write_bytes(_png_bytes(Image.fromarray(rgb), exif=exif))
    with Image.open(path) as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.float32) / 127.5 - 1
    x = read_image(path)
    assert x.shape == (3, *shown.shape[:2]) and shown.shape[:2] == ((7, 5) if orientation >= 5 else (5, 7))
    assert torch.allclose(x.permute(1, 2, 0), torch.from_numpy(shown), atol=1e-6)


@pytest.mark.parametrize("size", [(9000, 8000), (10000, 10000), (100000, 100000)])  # ours; Pillow warns; Pillow errs
def test_huge_declared_size_is_refused_in_one_line(tmp_path, size, png_declaring):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(*size))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not reach the user
        with pytest.raises(MediaError, match=r"^bomb.png: declares .* pixels, over the limit of 67108864 pixels") as e:
            read_image(path)
    assert "\n" not in str(e.value)
    with pytest.raises(MediaError, match=r"^row 3: declares"):
        decode_image_bytes(path.read_bytes(), name="row 3")
    with pytest.raises(MediaError, match=r"^labels.png: declares"):  # the check other image readers use
        media.open_image(path, "labels.png")


def test_pixel_limit_is_the_documented_one_and_adjustable(tmp_path):
    assert media.MAX_IMAGE_PIXELS == 8192 * 8192
    media.write_image(tmp_path / "a.png", torch.zeros(3, 4, 5))
    assert read_image(tmp_path / "a.png", max_pixels=20).shape == (3, 4, 5)
    with pytest.raises(MediaError, match=r"^a.png: declares 5x4 = 20 pixels, over the limit of 19 pixels"):
        read_image(tmp_path / "a.png", max_pixels=19)


def test_bad_arguments_and_bytes():
    with pytest.raises(MediaError, match=r"^x: channels must be 1 \(grey\) or 3 \(RGB\), got 4"):
        decode_image_bytes(_png_bytes(Image.new("L", (2, 2))), channels=4, name="x")
    with pytest.raises(MediaError, match=r"^k: empty image data"):
        decode_image_bytes(b"", name="k")
    with pytest.raises(MediaError, match=r"^k: not a valid image file"):
        decode_image_bytes(b"not an image" * 10, name="k")


def test_grey_tensor_writes_a_grey_png(tmp_path):
    x = torch.linspace(-1, 1, 256).view(1, 16, 16)
    media.write_image(tmp_path / "g.png", x)
    assert Image.open(tmp_path / "g.png").mode == "L"
    assert (read_image(tmp_path / "g.png", channels=1) - x).abs().max() <= 0.5 / 127.5 + 1e-6


def _old_decoder(arr: np.ndarray, channels: int) -> torch.Tensor:
    """The floats every 8-bit image had before the table look-up: scale to [0, 1], luma or repeat, map to [-1, 1]."""
    unit = arr.reshape(*arr.shape[:2], -1).astype(np.float32) / np.float32(255)
    if channels == 1 and unit.shape[-1] == 3:
        unit = unit @ np.array(media.image.LUMA, dtype=np.float32)[:, None]
    elif channels == 3 and unit.shape[-1] == 1:
        unit = np.repeat(unit, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(unit)).permute(2, 0, 1).mul(2.0).sub(1.0).clamp(-1.0, 1.0)


@pytest.mark.parametrize("mode,channels", [("L", 1), ("L", 3), ("RGB", 3), ("RGB", 1), ("P", 3), ("P", 1)])
def test_8bit_images_decode_to_the_floats_they_always_had(mode, channels):
    """The table look-up of 8-bit pixels gives, bit for bit, the floats of the arithmetic it replaced,
    for every value 0..255, grey, RGB and palette files, as grey or RGB."""
    every = np.arange(256, dtype=np.uint8).reshape(16, 16)
    if mode == "L":
        im, pixels = Image.fromarray(every), every
    elif mode == "RGB":
        pixels = np.stack([every, every.T, 255 - every], -1)
        im = Image.fromarray(pixels)
    else:
        im = Image.fromarray(every, mode="P")
        palette = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
        im.putpalette(palette.reshape(-1).tolist())
        pixels = palette[every]
    x = decode_image_bytes(_png_bytes(im), channels=channels)
    assert x.dtype == torch.float32 and x.shape == (channels, 16, 16)
    assert torch.equal(x, _old_decoder(pixels, channels))


def test_real_pngs_decode_to_the_floats_they_always_had(tmp_path):
    """The sample PNGs of the tests and benchmarks (written by write_image), read as files."""
    from fsqtok.datasets.samples import sample_images

    for i, img in enumerate(sample_images(4, 64, seed=0)):
        media.write_image(tmp_path / f"{i}.png", torch.as_tensor(img))
        rgb = np.asarray(Image.open(tmp_path / f"{i}.png").convert("RGB"))
        for channels in (1, 3):
            assert torch.equal(read_image(tmp_path / f"{i}.png", channels=channels), _old_decoder(rgb, channels))


def test_8bit_table_follows_exif_orientation(tmp_path):
    """A rotated 8-bit file takes the table path from a non-contiguous view: the same floats as the
    rotated pixels through the old arithmetic."""
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "r.png", exif=exif)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "r.png")))
    assert torch.equal(read_image(tmp_path / "r.png"), _old_decoder(shown, 3))
