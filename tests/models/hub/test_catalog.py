"""The shipped catalog, models a person adds, the license record and the keychain token helpers."""

from __future__ import annotations

import json
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from models.hub import catalog, license, store
from tests.support.hub_server import MemoryKeyring


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("LLAMA_DESK_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def use_keyring():
    previous = keyring.get_keyring()

    def use(backend):
        keyring.set_keyring(backend)
        return backend

    yield use
    keyring.set_keyring(previous)


def test_the_catalog_lists_scout_and_maverick_variants():
    entries = catalog.load_catalog()
    assert [e.repo_id for e in entries] == [
        f"mlx-community/Llama-4-Scout-17B-16E-Instruct-{b}bit" for b in (3, 4, 6, 8)
    ] + [f"mlx-community/Llama-4-Maverick-17B-128E-Instruct-{b}bit" for b in (4, 6, 8)]
    for e in entries:
        assert e.key == e.repo_id and e.source == "catalog" and e.expected_bytes_estimated
        assert e.active_params == 17_000_000_000
        assert (e.total_params, e.experts) == ((109e9, 16) if e.family == "scout" else (400e9, 128))
        assert str(e.bits) in e.display_name and e.family.capitalize() in e.display_name
    sizes = {e.repo_id.rsplit("-", 1)[1] + e.family: e.expected_bytes for e in entries}
    assert sizes["4bitscout"] == 61_100_000_000 and sizes["4bitmaverick"] == 226_000_000_000
    # Shipped inside the package (hatch's packages = ["desktop", "models"] takes non-.py files).
    shipped = json.loads((Path(catalog.__file__).parent / "catalog.json").read_text())
    assert "estimate" in shipped["note"]


def test_adding_a_folder_validates_it_and_keeps_it(checkpoints, data_dir):
    entry = catalog.add_user_model(str(checkpoints["4bit"]), "Tiny")
    assert (entry.key, entry.path, entry.display_name, entry.source) == (
        str(checkpoints["4bit"]),
        checkpoints["4bit"],
        "Tiny",
        "user",
    )
    assert entry.bits == 4 and entry.family == "other" and not entry.expected_bytes_estimated
    assert entry.expected_bytes == sum(p.stat().st_size for p in checkpoints["4bit"].iterdir())
    assert json.loads((data_dir / "user_models.json").read_text()) == {
        "models": [{"path": str(checkpoints["4bit"]), "display_name": "Tiny"}]
    }
    assert [e for e in catalog.all_models() if e.key == str(checkpoints["4bit"])] == [entry]
    assert catalog.all_models()[-1] == entry


def test_adding_a_repo_id_guesses_family_and_bits():
    entry = catalog.add_user_model("someone/Llama-4-Maverick-17B-128E-Instruct-5bit")
    assert (entry.repo_id, entry.family, entry.bits, entry.experts) == (
        "someone/Llama-4-Maverick-17B-128E-Instruct-5bit",
        "maverick",
        5,
        128,
    )
    catalog.add_user_model("someone/Llama-4-Maverick-17B-128E-Instruct-5bit")  # no duplicate
    assert [e.key for e in catalog.user_models()] == ["someone/Llama-4-Maverick-17B-128E-Instruct-5bit"]
    assert catalog.remove_user_model(entry.key) and catalog.user_models() == []
    assert not catalog.remove_user_model(entry.key)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda tmp: tmp, "has no config.json; it is not a model folder"),
        (
            lambda tmp: (tmp / "config.json").write_text('{"model_type": "llama"}') and tmp,
            "is a 'llama' model, not Llama 4",
        ),
        (lambda tmp: Path("no/such/thing/here.txt"), "is neither a checkpoint folder nor a Hub repo id"),
    ],
)
def test_adding_something_unusable_says_why(tmp_path, make, reason):
    folder = tmp_path / "candidate"
    folder.mkdir()
    with pytest.raises(catalog.CatalogError, match=reason):
        catalog.add_user_model(str(make(folder)))


def test_a_folder_that_went_away_is_listed_as_invalid(tmp_path, checkpoints):
    import shutil

    copy = shutil.copytree(checkpoints["4bit"], tmp_path / "copy")
    catalog.add_user_model(str(copy))
    shutil.rmtree(copy)
    [row] = [r for r in catalog.list_models() if r.key == str(copy)]
    assert row.status == "invalid" and "does not exist" in row.message


def test_an_unreadable_user_file_is_a_clear_error(data_dir):
    data_dir.mkdir()
    (data_dir / "user_models.json").write_text("{not json")
    with pytest.raises(catalog.CatalogError, match=r"user_models\.json cannot be read .* fix or delete it"):
        catalog.user_models()


def test_license_acceptance_is_recorded_per_version(data_dir):
    assert license.requires_license("mlx-community/Llama-4-Scout-17B-16E-Instruct-4bit")
    assert license.requires_license("meta-llama/llama4-custom")
    assert not license.requires_license("mlx-community/Qwen2.5-VL-7B-Instruct-4bit")
    assert not license.license_accepted()
    license.accept_license()
    assert license.license_accepted()
    assert not license.license_accepted("llama4-community-license-2099-01-01")
    record = json.loads((data_dir / license.LICENSE_FILE).read_text())
    assert list(record["accepted"]) == [license.LICENSE_VERSION]
    assert record["accepted"][license.LICENSE_VERSION].endswith("+00:00")  # when, in UTC


def test_the_license_summary_carries_the_eu_notice_and_links():
    text = " ".join(license.LICENSE_SUMMARY.split())  # wrapped for a terminal
    assert license.EU_MULTIMODAL_NOTICE in text
    assert (
        "individual domiciled in, or a company with a principal place of business in, the European Union"
    ) in text
    assert "does not apply to end users of a product or service" in text
    assert license.LICENSE_URL in text and license.USE_POLICY_URL in text and "700 million" in text


def test_the_token_lives_in_the_keychain(use_keyring):
    backend = use_keyring(MemoryKeyring())
    assert store.get_token() is None
    store.set_token("  hf_secret \n")
    assert store.get_token() == "hf_secret"
    assert backend.secrets == {(store.KEYRING_SERVICE, store.KEYRING_USER): "hf_secret"}
    store.clear_token()
    store.clear_token()  # clearing twice is fine
    assert store.get_token() is None
    with pytest.raises(store.TokenStoreError, match="empty"):
        store.set_token("   ")


def test_without_a_keychain_the_token_helpers_degrade_clearly(use_keyring):
    use_keyring(fail.Keyring())
    assert store.get_token() is None
    with pytest.raises(store.TokenStoreError, match="No system keychain is available.*HF_TOKEN"):
        store.set_token("hf_secret")
    with pytest.raises(store.TokenStoreError, match="No system keychain"):
        store.clear_token()


def test_describe_repo_takes_family_and_bits_from_the_catalog_entry():
    shipped = catalog.load_catalog()[0]
    described = catalog.describe_repo(shipped.repo_id.upper())  # Hub repo ids are case-insensitive
    assert described == shipped and described.source == "catalog"


def test_describe_repo_guesses_a_repo_outside_the_catalog_from_its_name():
    described = catalog.describe_repo("someone/Llama-4-Scout-17B-16E-Instruct-5bit")
    assert (described.family, described.bits, described.experts) == ("scout", 5, 16)
    assert catalog.describe_repo("someone/Qwen3-8B").family == "other"
