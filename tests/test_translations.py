"""Chinese is the default language: every user-facing string must have its translation."""

import re
import subprocess
import sys

from babel.messages.pofile import read_po

from tests.conftest import ROOT

CATALOGUE = ROOT / "app/translations/zh_Hans_CN/LC_MESSAGES/messages.po"
PLACEHOLDER = re.compile(r"%\((\w+)\)")


def test_every_message_in_the_code_is_translated_to_chinese(tmp_path):
    template = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "_l",
            "-o",
            str(template),
            "--no-location",
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with template.open("rb") as handle:
        wanted = {message.id for message in read_po(handle) if message.id}
    with CATALOGUE.open("rb") as handle:
        catalogue = read_po(handle)

    missing = []
    for msgid in sorted(wanted, key=str):
        message = catalogue.get(msgid)
        strings = message.string if message else None
        if isinstance(strings, tuple | list):
            strings = strings[0]
        if not message or not strings or message.fuzzy:
            missing.append(msgid)
    assert not missing, "untranslated (run `make extract-messages`, then translate):\n" + "\n".join(
        map(str, missing)
    )


def test_chinese_plurals_keep_every_number_of_the_english_plural():
    """Chinese has one plural form, used for every number: it must say the number where the
    English plural does. "最后一排空置" (the last row kept empty) was shown for a coach with its
    last two rows kept empty."""
    with CATALOGUE.open("rb") as handle:
        catalogue = read_po(handle)
    assert catalogue.num_plurals == 1
    lost = [
        (message.id[1], message.string[0])
        for message in catalogue
        if message.pluralizable
        and message.id
        and set(PLACEHOLDER.findall(message.id[1])) - set(PLACEHOLDER.findall(message.string[0]))
    ]
    assert not lost, lost
