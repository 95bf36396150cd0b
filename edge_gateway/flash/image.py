"""Writing MicroPython itself (`--image`): esptool for the ESP32 family, a
UF2 copy for the Pico W. The image's chip is read from the file before
anything is written, and compared with the chip found and the profile's:

- an ESP32 image (.bin) starts with the bootloader's image header: magic
  0xE9, and at byte 12 the chip id of the extended header (0 ESP32, 9
  ESP32-S3; ESP-IDF's esp_image_header_t);
- a UF2 file is 512-byte blocks (magic 0x0A324655 0x9E5D5157); with flag
  0x2000 the family id is at byte 28 (0xE48BFF56 RP2040).

esptool is used as a library (esptool.cmds.detect_chip, then its command
line entry for erase and write, as documented); a Pico in BOOTSEL mode is a
USB drive (RPI-RP2, INFO_UF2.TXT says the board) that takes the .uf2."""

from __future__ import annotations

import glob
import os
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path

from .errors import BadInput, NoAnswer, WrongImage, WrongProfile

ESP_CHIP_IDS = {0: "esp32", 2: "esp32s2", 5: "esp32c3", 9: "esp32s3", 12: "esp32c2", 13: "esp32c6", 16: "esp32h2"}
UF2_FAMILIES = {0xE48BFF56: "rp2040", 0xE48BFF59: "rp2350", 0xE48BFF5A: "rp2350", 0xE48BFF5B: "rp2350"}
# Where each chip's image goes (MicroPython's download pages for ESP32_GENERIC*).
ESP_OFFSETS = {"esp32": 0x1000, "esp32s3": 0x0}
UF2_MAGIC = (0x0A324655, 0x9E5D5157)


def image_chip(path: str) -> str:
    """The chip an image is built for: "esp32", "esp32s3", "rp2040", ..."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise BadInput(f"cannot read the image {path}: {e.strerror}", "give the path of a MicroPython .bin or .uf2") from None
    if len(head) >= 32 and struct.unpack_from("<II", head) == UF2_MAGIC:
        flags, family = struct.unpack_from("<I", head, 8)[0], struct.unpack_from("<I", head, 28)[0]
        if flags & 0x2000 and family in UF2_FAMILIES:
            return UF2_FAMILIES[family]
        raise WrongImage(f"{path} is a UF2 file for another family (0x{family:08x})",
                         "download MicroPython for the Raspberry Pi Pico W (RPI_PICO_W) as .uf2")
    if len(head) >= 16 and head[0] == 0xE9:
        chip_id = struct.unpack_from("<H", head, 12)[0]
        return ESP_CHIP_IDS.get(chip_id, f"esp chip id {chip_id}")
    raise WrongImage(f"{path} is not a MicroPython image (neither an ESP32 .bin nor a UF2 file)",
                     "download the board's MicroPython from micropython.org: .bin for an ESP32, .uf2 for a Pico W")


def check_image(image: str, mcu: str, profile: str, found: str | None = None) -> str:
    """The image's chip, refused when it is not the profile's or the chip found."""
    chip = image_chip(image)
    if found is not None and found != mcu:
        raise WrongProfile(f"the board is an {found.upper()}, but profile {profile} is for an {mcu.upper()}",
                           "give the board's own profile with --board (preau flash --help lists them)")
    if chip != mcu:
        raise WrongImage(f"{os.path.basename(image)} is MicroPython for an {chip.upper()}, but this board is an "
                         f"{mcu.upper()}",
                         f"download the {mcu.upper()} build of MicroPython (1.22 or newer) and give it to --image")
    return chip


def esp_detect(port: str) -> str:
    """The chip esptool finds on `port` ("esp32", "esp32s3")."""
    from esptool.cmds import detect_chip

    try:
        esp = detect_chip(port=port)
    except Exception as e:  # esptool's FatalError and serial errors: one sentence for the technician
        raise NoAnswer(f"esptool could not talk to the board's bootloader on {port} ({e})",
                       "hold the board's BOOT button, press and release RESET, release BOOT, and run again") from None
    try:
        name = esp.CHIP_NAME
    finally:
        try:
            esp._port.close()  # pyright: ignore[reportAttributeAccessIssue]  # esptool keeps it open
        except Exception:
            pass
    return name.lower().replace("-", "")


def esp_write(port: str, image: str, chip: str, baud: int = 460800) -> None:
    import esptool

    base = ["--chip", chip, "--port", port, "--baud", str(baud)]
    try:
        esptool.main([*base, "erase-flash"])
        esptool.main([*base, "write-flash", "-z", hex(ESP_OFFSETS[chip]), image])
    except SystemExit as e:  # esptool exits on its own errors
        raise NoAnswer(f"esptool failed writing {os.path.basename(image)} (exit {e.code})",
                       "check the cable, hold BOOT while pressing RESET, and run again") from None
    except Exception as e:
        raise NoAnswer(f"esptool failed writing {os.path.basename(image)}: {e}",
                       "check the cable, hold BOOT while pressing RESET, and run again") from None


def uf2_drives() -> list[str]:
    """Mounted Pico bootloaders (RPI-RP2)."""
    pats = ("/media/*/RPI-RP2", "/run/media/*/RPI-RP2", "/media/RPI-RP2", "/Volumes/RPI-RP2")
    return sorted({d for p in pats for d in glob.glob(p) if os.path.isfile(os.path.join(d, "INFO_UF2.TXT"))})


def uf2_drive_chip(drive: str) -> str:
    info = Path(drive, "INFO_UF2.TXT").read_text(errors="replace")
    return "rp2350" if "RP2350" in info else "rp2040"


def uf2_write(image: str, drive: str | None, wait_s: float = 30.0,
              drives: Callable[[], list[str]] = uf2_drives) -> None:
    """Copy the UF2 to the Pico's bootloader drive; the Pico restarts into it."""
    deadline = time.monotonic() + wait_s
    while drive is None:
        found = drives()
        if found:
            drive = found[0]
            break
        if time.monotonic() > deadline:
            raise NoAnswer("no Pico bootloader drive (RPI-RP2) appeared",
                           "hold the Pico's BOOTSEL button while plugging it in, then run again "
                           "(or give the mounted drive with --uf2-drive)")
        time.sleep(0.5)
    chip = uf2_drive_chip(drive)
    if chip != image_chip(image):
        raise WrongImage(f"{os.path.basename(image)} is for an {image_chip(image).upper()}, the Pico's bootloader "
                         f"says {chip.upper()}", "download MicroPython for RPI_PICO_W as .uf2")
    shutil.copyfile(image, os.path.join(drive, os.path.basename(image)))
