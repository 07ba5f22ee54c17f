"""How long a text message is, in SMS segments (pure).

A message in the GSM 7-bit alphabet fits 160 characters (153 per segment when split); anything
else, Chinese included, is sent as UCS-2: 70 characters, or 67 per segment when split.
"""

from __future__ import annotations

import math

GSM_7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_7_EXTENDED = set("^{}\\[~]|€")


def sms_segments(text: str) -> int:
    if all(char in GSM_7 or char in GSM_7_EXTENDED for char in text):
        length = len(text) + sum(char in GSM_7_EXTENDED for char in text)
        return 1 if length <= 160 else math.ceil(length / 153)
    # UCS-2 counts UTF-16 code units: a character outside the BMP takes two.
    length = len(text.encode("utf-16-le")) // 2
    return 1 if length <= 70 else math.ceil(length / 67)
