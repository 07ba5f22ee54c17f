"""Chinese is the default language: every user-facing string must have its translation."""

import subprocess
import sys

from babel.messages.pofile import read_po

from tests.conftest import ROOT

CATALOGUE = ROOT / "app/translations/zh_Hans_CN/LC_MESSAGES/messages.po"


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
