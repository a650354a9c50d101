"""Photos on the items step: four image formats in, one clean JPEG out, everything else refused."""
from __future__ import annotations

import io
import os
import re

import pytest
from flask import current_app
from PIL import Image

from connector.portal import photos
from tests.portal.conftest import image_bytes, lines_of, reason_id, returns_of


def _damaged_jacket(shop, order, files, comment="The zip is broken"):
    jacket = lines_of(order)["Trail Jacket"]
    data = {f"line-{jacket}-quantity": "1", f"line-{jacket}-reason": str(reason_id(shop, "damaged")),
            f"line-{jacket}-comment": comment}
    data[f"line-{jacket}-photos"] = [(io.BytesIO(content), name) for content, name in files]
    return jacket, data


def _stored(key: str) -> Image.Image:
    return Image.open(io.BytesIO(current_app.extensions["connector.storage"].get(key)))


def test_photo_is_stored_as_an_upright_jpeg_without_metadata(shopper, shop, order_1001):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    exif[0x010F] = "SecretCam"  # camera make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 0.0)}  # GPS
    photo = image_bytes("JPEG", size=(60, 40), exif=exif.tobytes())
    shopper.sign_in()
    _jacket, data = _damaged_jacket(shop, order_1001, [(photo, "IMG_0001.JPG")])
    resp = shopper.choose_items(order_1001, data, content_type="multipart/form-data")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    [line] = returns_of(shop)[0].lines
    [key] = line.photos
    assert re.fullmatch(rf"shop-{shop.id}/photos/[0-9a-f]{{32}}\.jpg", key)
    stored = _stored(key)
    assert stored.format == "JPEG" and stored.size == (40, 60)
    assert not stored.getexif() and "exif" not in stored.info


@pytest.mark.parametrize("fmt,name", [("PNG", "shot.png"), ("WEBP", "shot.webp"), ("HEIF", "IMG_2.HEIC")])
def test_png_webp_and_heic_are_accepted(shopper, shop, order_1001, fmt, name):
    shopper.sign_in()
    _jacket, data = _damaged_jacket(shop, order_1001, [(image_bytes(fmt), name)])
    assert shopper.choose_items(order_1001, data, content_type="multipart/form-data").status_code == 302
    [key] = returns_of(shop)[0].lines[0].photos
    assert _stored(key).format == "JPEG"


def test_large_photos_are_scaled_down_to_2000px():
    out = Image.open(io.BytesIO(photos.normalise(image_bytes("PNG", size=(4000, 1000)))))
    assert out.size == (2000, 500) and out.mode == "RGB"


@pytest.mark.parametrize("content,name", [
    (b"MZ\x90\x00\x03" + b"\x00" * 200, "holiday.jpg"),  # a Windows program renamed .jpg
    (b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF", "receipt.pdf"),
    (b"GIF89a" + b"\x00" * 30, "anim.gif"),
    (b"", "empty.jpg"),
])
def test_files_that_are_not_photos_are_refused_beside_the_field(shopper, shop, order_1001, content, name):
    shopper.sign_in()
    jacket, data = _damaged_jacket(shop, order_1001, [(content, name)])
    resp = shopper.choose_items(order_1001, data, content_type="multipart/form-data")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert f'id="line-{jacket}-photos-error"' in page
    assert ">The zip is broken</textarea>" in page  # nothing else lost


def test_too_large_photo_is_refused(shopper, shop, order_1001, monkeypatch):
    monkeypatch.setattr(current_app.config["CONNECTOR"], "max_photo_bytes", 1024 * 1024)
    noise = Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3))
    out = io.BytesIO()
    noise.save(out, format="PNG")
    assert len(out.getvalue()) > 1024 * 1024
    shopper.sign_in()
    jacket, data = _damaged_jacket(shop, order_1001, [(out.getvalue(), "big.png")])
    resp = shopper.choose_items(order_1001, data, content_type="multipart/form-data")
    assert resp.status_code == 422
    assert "This photo is larger than 1 MB." in resp.get_data(as_text=True)


def test_at_most_the_configured_number_of_photos(shopper, shop, order_1001, monkeypatch):
    monkeypatch.setattr(current_app.config["CONNECTOR"], "max_photos_per_line", 2)
    shopper.sign_in()
    jacket, data = _damaged_jacket(shop, order_1001, [(image_bytes(), f"{i}.jpg") for i in range(3)])
    resp = shopper.choose_items(order_1001, data, content_type="multipart/form-data")
    assert resp.status_code == 422
    assert "You can add at most 2 photos per item." in resp.get_data(as_text=True)


def test_photos_survive_a_re_render_and_can_be_kept(shopper, shop, order_1001):
    shopper.sign_in()
    jacket, data = _damaged_jacket(shop, order_1001, [(image_bytes(), "ok.jpg")], comment="")
    resp = shopper.choose_items(order_1001, data, content_type="multipart/form-data")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "Please describe the problem." in page
    kept = re.findall(rf'name="line-{jacket}-keep" value="([^"]+)" checked', page)
    assert len(kept) == 1
    again = {f"line-{jacket}-quantity": "1", f"line-{jacket}-reason": str(reason_id(shop, "damaged")),
             f"line-{jacket}-comment": "Zip broken", f"line-{jacket}-keep": kept[0]}
    assert shopper.post(f"orders/{order_1001.id}/items", again).status_code == 302
    assert returns_of(shop)[0].lines[0].photos == kept


def test_photo_keys_of_another_shop_or_path_are_ignored(shopper, shop, order_1001):
    shopper.sign_in()
    jacket = lines_of(order_1001)["Trail Jacket"]
    data = {f"line-{jacket}-quantity": "1", f"line-{jacket}-reason": str(reason_id(shop, "damaged")),
            f"line-{jacket}-comment": "Broken",
            f"line-{jacket}-keep": [f"shop-{shop.id + 1}/photos/{'a' * 32}.jpg", "../../etc/passwd"]}
    resp = shopper.post(f"orders/{order_1001.id}/items", data)
    assert resp.status_code == 422 and "Please add a photo of the problem." in resp.get_data(as_text=True)
