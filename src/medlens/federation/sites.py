"""Which cases each site of a federation holds, and what a site tells the server about itself.

Sites come from a manifest column (``--split-by hospital``: one site per value), or the tool splits the train and
val cases itself, keeping patients whole: ``iid`` deals patients out at random in equal shares; ``label`` skews the
label mix by drawing, for every label, the share each site receives from a Dirichlet distribution
(concentration ``alpha``: small alpha, strong skew), the usual way federated benchmarks make non-IID sites
(Hsu et al. 2019). The same draw splits train and val, so a site validates on cases like its own. The rule and
its seed are recorded, so another process (a site joining a server) finds the same cases.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from medlens.core.errors import ConfigError, InputError
from medlens.data.dataset import Case, Dataset

SKEWS = ("iid", "label")


@dataclass
class Site:
    """One site: its name and the cases it trains and validates on (they never leave it)."""

    name: str
    train: list[Case]
    val: list[Case]

    def describe(self, names: list[str] | None = None) -> dict[str, Any]:
        """What the site tells the server: its sizes and its label mix (counts per target, class names for class
        indices), no case or image."""

        def mix(cases: list[Case]) -> dict[str, int]:
            counts = Counter(c.target for c in cases)
            return {_name(t, names): n for t, n in sorted(counts.items())}

        return {
            "site": self.name,
            "n_train": len(self.train),
            "n_val": len(self.val),
            "label_mix": mix(self.train),
            "val_label_mix": mix(self.val),
        }


def _name(target: str, names: list[str] | None) -> str:
    if names and target.isdigit() and int(target) < len(names):
        return names[int(target)]
    return target


@dataclass
class SiteSplit:
    """The sites of a federation and the rule that made them (recorded in the card and ``federation.json``)."""

    sites: list[Site]
    rule: str

    def get(self, name: str) -> Site:
        for site in self.sites:
            if site.name == name:
                return site
        raise ConfigError("--site", f"no site {name!r} (sites: {', '.join(s.name for s in self.sites)})")


def split_sites(
    dataset: Dataset,
    n_sites: int,
    *,
    by: str | None = None,
    skew: str = "iid",
    alpha: float = 0.5,
    seed: int = 0,
) -> SiteSplit:
    """Split the dataset's train and val cases into sites.

    Args:
        dataset: the dataset.
        n_sites: how many sites (with ``by``: must equal the column's number of values).
        by: a manifest column naming each case's site; None: the tool splits.
        skew: ``iid`` or ``label`` (Dirichlet over sites per label) when the tool splits.
        alpha: the Dirichlet concentration of ``label`` skew.
        seed: the seed of the split.

    Raises:
        ConfigError: for a bad number of sites or skew, or a column whose values do not match ``n_sites``.
        InputError: naming the manifest when a site would have no training or no validation case.
    """
    manifest = dataset.root / dataset.spec.manifest
    if n_sites < 1:
        raise ConfigError("--sites", f"must be at least 1, got {n_sites}")
    if skew not in SKEWS:
        raise ConfigError("--skew", f"unknown skew {skew!r} (choose from {', '.join(SKEWS)})")
    train, val = dataset.split("train"), dataset.split("val")
    if by is not None:
        values = sorted({c.value(by) for c in train + val})
        if values == [""]:
            raise InputError(manifest, f"has no column {by!r} to split sites by (or it is empty)")
        if len(values) != n_sites:
            raise ConfigError(
                "--sites", f"column {by!r} has {len(values)} site values ({', '.join(values)}), not {n_sites}"
            )
        sites = [Site(v, [c for c in train if c.value(by) == v], [c for c in val if c.value(by) == v]) for v in values]
        rule = f"one site per value of the manifest column {by!r}"
    else:
        rng = np.random.default_rng(seed)
        labels = sorted({c.target for c in train + val})
        shares = {label: _shares(rng, n_sites, skew, alpha) for label in labels}
        train_of, val_of = _deal(train, n_sites, shares, rng), _deal(val, n_sites, shares, rng)
        sites = [Site(f"site_{k}", train_of[k], val_of[k]) for k in range(n_sites)]
        rule = (
            "patients dealt out at random in equal shares (IID)"
            if skew == "iid"
            else f"label skew: each label's patients shared among sites by a Dirichlet(alpha={alpha:g}) draw"
        ) + f", train and val alike, seed {seed}"
    for site in sites:
        if not site.train or not site.val:
            what = "training" if not site.train else "validation"
            raise InputError(
                manifest,
                f"site {site.name} would hold no {what} case; use fewer sites" + ("" if by else " or a larger --alpha"),
            )
    return SiteSplit(sites, rule)


def _shares(rng: np.random.Generator, n_sites: int, skew: str, alpha: float) -> np.ndarray:
    if skew == "iid":
        return np.full(n_sites, 1.0 / n_sites)
    return rng.dirichlet(np.full(n_sites, alpha))


def _deal(cases: list[Case], n_sites: int, shares: dict[str, np.ndarray], rng: np.random.Generator) -> list[list[Case]]:
    """Cases per site, whole patients at a time: each label's patients (a patient's label is that of its first
    case) are shuffled and cut at the cumulative shares."""
    patients: dict[str, list[Case]] = {}
    for case in cases:
        patients.setdefault(case.patient_id, []).append(case)
    by_label: dict[str, list[str]] = {}
    for patient, own in patients.items():
        by_label.setdefault(own[0].target, []).append(patient)
    site_of: dict[str, int] = {}
    for label, members in sorted(by_label.items()):
        order = [members[i] for i in rng.permutation(len(members))]
        cuts = np.round(np.cumsum(shares[label])[:-1] * len(order)).astype(int)
        for k, part in enumerate(np.split(np.array(order, dtype=object), cuts)):
            for patient in part:
                site_of[str(patient)] = k
    out: list[list[Case]] = [[] for _ in range(n_sites)]
    for case in cases:  # manifest order within a site
        out[site_of[case.patient_id]].append(case)
    return out
