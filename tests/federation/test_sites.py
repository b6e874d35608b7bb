"""Sites of a federation: patients kept whole, IID shares alike, label skew unlike, a manifest column obeyed."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from medlens.core.errors import ConfigError, InputError
from medlens.data.dataset import load_dataset
from medlens.federation.sites import split_sites


def test_iid_split_deals_whole_patients_in_equal_shares(pneumonia_dataset) -> None:  # type: ignore[no-untyped-def]
    split = split_sites(pneumonia_dataset, 2, skew="iid", seed=0)
    train = [c.case_id for s in split.sites for c in s.train]
    assert sorted(train) == sorted(c.case_id for c in pneumonia_dataset.split("train"))  # each case exactly once
    owners: dict[str, set[str]] = {}
    for site in split.sites:
        for case in site.train + site.val:
            owners.setdefault(case.patient_id, set()).add(site.name)
    assert all(len(v) == 1 for v in owners.values())
    sizes = [len(s.train) for s in split.sites]
    assert abs(sizes[0] - sizes[1]) <= 2
    mixes = [Counter(c.target for c in s.train) for s in split.sites]
    assert abs(mixes[0]["1"] / sizes[0] - mixes[1]["1"] / sizes[1]) < 0.15  # stratified: label shares alike
    again = split_sites(pneumonia_dataset, 2, skew="iid", seed=0)
    assert [[c.case_id for c in s.train] for s in again.sites] == [[c.case_id for c in s.train] for s in split.sites]
    assert "IID" in split.rule and "seed 0" in split.rule
    assert split.sites[0].describe(["normal", "pneumonia"])["label_mix"] == {
        "normal": mixes[0]["0"],
        "pneumonia": mixes[0]["1"],
    }


def test_label_skew_gives_sites_unlike_label_mixes(pneumonia_dataset) -> None:  # type: ignore[no-untyped-def]
    split = split_sites(pneumonia_dataset, 2, skew="label", alpha=0.3, seed=1)
    shares = [Counter(c.target for c in s.train)["1"] / len(s.train) for s in split.sites]
    iid = split_sites(pneumonia_dataset, 2, skew="iid", seed=1)
    iid_shares = [Counter(c.target for c in s.train)["1"] / len(s.train) for s in iid.sites]
    assert abs(shares[0] - shares[1]) > abs(iid_shares[0] - iid_shares[1]) + 0.2
    assert "Dirichlet(alpha=0.3)" in split.rule


def test_sites_from_a_manifest_column_and_refusals(pneumonia_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manifest = pneumonia_dataset.root / pneumonia_dataset.spec.manifest
    rows = list(csv.DictReader(open(manifest)))
    for i, row in enumerate(rows):
        row["hospital"] = "north" if i % 3 else "south"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    dataset = load_dataset(pneumonia_dataset.root)
    split = split_sites(dataset, 2, by="hospital")
    assert [s.name for s in split.sites] == ["north", "south"]
    assert all(c.value("hospital") == "south" for c in split.get("south").train + split.get("south").val)
    with pytest.raises(ConfigError, match="has 2 site values"):
        split_sites(dataset, 3, by="hospital")
    with pytest.raises(InputError, match="no column 'ward'"):
        split_sites(dataset, 2, by="ward")
    with pytest.raises(InputError, match="would hold no"):
        split_sites(dataset, 25, skew="iid")  # 20 validation patients cannot fill 25 sites
    with pytest.raises(ConfigError, match="unknown skew"):
        split_sites(dataset, 2, skew="dirichlet")
