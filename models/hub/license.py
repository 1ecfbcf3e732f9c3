"""The Llama 4 Community License: a short summary to show, and the record that a person accepted it.

Meta's Llama 4 weights (and mlx-community's conversions) come under the Llama 4 Community
License Agreement and its Acceptable Use Policy. Before the first download of a Llama 4 repo
the app shows ``LICENSE_SUMMARY`` with links to the full texts and asks for acceptance;
``accept_license()`` records it (version and time) in ``license.json`` in the data folder
(``models.app_folders.data_dir()``), ``license_accepted()`` reads it back. A new
``LICENSE_VERSION`` asks again. ``requires_license(repo_id)`` tells which repos need it.

This summary is a reading aid, not legal advice; the full texts at the links govern.
"""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime

from models.app_folders import read_json, write_json

LICENSE_NAME = "Llama 4 Community License Agreement"
LICENSE_VERSION = "llama4-community-license-2025-04-05"
LICENSE_URL = "https://www.llama.com/llama4/license/"
USE_POLICY_URL = "https://www.llama.com/llama4/use-policy/"
LICENSE_FILE = "license.json"

EU_MULTIMODAL_NOTICE = (
    "With respect to any multimodal models included in Llama 4, the rights granted under Section 1(a) "
    "of the Llama 4 Community License Agreement are not being granted to you if you are an individual "
    "domiciled in, or a company with a principal place of business in, the European Union. This "
    "restriction does not apply to end users of a product or service that incorporates any such "
    "multimodal models."
)

_EU_BULLET = textwrap.fill(
    f"- Acceptable Use Policy notice for the EU: {EU_MULTIMODAL_NOTICE}", width=98, subsequent_indent="  "
)

LICENSE_SUMMARY = f"""\
Llama 4 is licensed under the {LICENSE_NAME} (version of April 5, 2025).
In short:
- Meta grants you a non-exclusive, worldwide, non-transferable, royalty-free limited license to
  use, reproduce, distribute, copy, modify and create derivative works of the Llama Materials.
- If you redistribute them, or a product or service that contains them, include a copy of the
  agreement and display "Built with Llama"; a model trained or fine-tuned from them and
  distributed must have a name that begins with "Llama". Keep the notice: "Llama 4 is licensed
  under the Llama 4 Community License, Copyright (c) Meta Platforms, Inc. All Rights Reserved."
- Your use must follow applicable laws and the Llama 4 Acceptable Use Policy, which forbids, among
  other things, illegal activity, harm to people, deception, and critical uses without safeguards.
- Companies whose products had more than 700 million monthly active users on the Llama 4 release
  date need a separate license from Meta.
- The materials come "as is", without warranty; Meta's liability is limited. No trademark rights
  are granted beyond the attribution above.
{_EU_BULLET}
Full license: {LICENSE_URL}
Acceptable Use Policy: {USE_POLICY_URL}
"""

_LLAMA4 = re.compile(r"llama[-_ ]?4", re.IGNORECASE)


def requires_license(repo_id: str) -> bool:
    """Whether ``repo_id`` names Llama 4 weights (so the Llama 4 license applies)."""
    return bool(_LLAMA4.search(repo_id))


def accept_license(version: str = LICENSE_VERSION) -> None:
    """Record that the person accepted license ``version`` (raises UserDataError if it cannot be saved)."""
    record = read_json(LICENSE_FILE, {})
    previous = record.get("accepted")
    accepted = previous if isinstance(previous, dict) else {}
    accepted[version] = datetime.now(UTC).isoformat(timespec="seconds")
    record["accepted"] = accepted
    write_json(LICENSE_FILE, record)


def license_accepted(version: str = LICENSE_VERSION) -> bool:
    """Whether license ``version`` was accepted on this machine (an unreadable record counts as no)."""
    from models.app_folders import UserDataError

    try:
        record = read_json(LICENSE_FILE, {})
    except UserDataError:
        return False
    accepted = record.get("accepted")
    return isinstance(accepted, dict) and version in accepted
