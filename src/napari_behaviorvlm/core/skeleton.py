"""Skeleton: keypoint names, body regions, edges and left/right symmetric pairs."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["Skeleton", "default_qd_mouse_skeleton"]


def _as_pairs(value) -> list[tuple[str, str]]:
    return [tuple(pair) for pair in value]


@attrs.define(eq=True)
class Skeleton:
    """The named keypoints of one animal and how they group and connect.

    Attributes:
        keypoints: Keypoint names, in the order used by every array (axis ``K``).
        regions: Region name -> keypoint names in that region (e.g. ``ears``: 2 keypoints).
            Every keypoint belongs to exactly one region.
        edges: Pairs of keypoint names drawn as skeleton lines.
        symmetry: Left/right pairs of keypoint names (a swap of such a pair is a common error).
        name: A label for the skeleton.
    """

    keypoints: list[str] = attrs.field(converter=list)
    regions: dict[str, list[str]] = attrs.field(converter=lambda d: {k: list(v) for k, v in d.items()})
    edges: list[tuple[str, str]] = attrs.field(factory=list, converter=_as_pairs)
    symmetry: list[tuple[str, str]] = attrs.field(factory=list, converter=_as_pairs)
    name: str = "skeleton"

    def __attrs_post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check names are unique and every reference names a keypoint.

        Raises:
            ValueError: describing the first problem found.
        """
        if len(set(self.keypoints)) != len(self.keypoints):
            dupes = sorted({k for k in self.keypoints if self.keypoints.count(k) > 1})
            raise ValueError(f"Skeleton keypoint names must be unique; repeated: {dupes}")
        known = set(self.keypoints)
        seen: dict[str, str] = {}
        for region, members in self.regions.items():
            for kp in members:
                if kp not in known:
                    raise ValueError(f"Region {region!r} names unknown keypoint {kp!r}")
                if kp in seen:
                    raise ValueError(f"Keypoint {kp!r} is in regions {seen[kp]!r} and {region!r}")
                seen[kp] = region
        missing = [kp for kp in self.keypoints if kp not in seen]
        if self.regions and missing:
            raise ValueError(f"Keypoints not in any region: {missing}")
        for kind, pairs in (("edge", self.edges), ("symmetric pair", self.symmetry)):
            for a, b in pairs:
                if a not in known or b not in known:
                    raise ValueError(f"Skeleton {kind} ({a!r}, {b!r}) names an unknown keypoint")

    @property
    def n_keypoints(self) -> int:
        return len(self.keypoints)

    def index(self, keypoint: str) -> int:
        """Index of ``keypoint`` along the keypoint axis."""
        return self.keypoints.index(keypoint)

    def region_of(self, keypoint: str) -> str:
        """Name of the region that holds ``keypoint``."""
        for region, members in self.regions.items():
            if keypoint in members:
                return region
        raise KeyError(keypoint)

    def region_indices(self) -> dict[str, list[int]]:
        """Region name -> keypoint indices."""
        return {r: [self.index(k) for k in ks] for r, ks in self.regions.items()}

    def edge_indices(self) -> list[tuple[int, int]]:
        return [(self.index(a), self.index(b)) for a, b in self.edges]

    def symmetry_indices(self) -> list[tuple[int, int]]:
        return [(self.index(a), self.index(b)) for a, b in self.symmetry]

    def mirror_index(self) -> list[int]:
        """For each keypoint index, the index of its left/right partner (itself if none)."""
        mirror = list(range(self.n_keypoints))
        for a, b in self.symmetry_indices():
            mirror[a], mirror[b] = b, a
        return mirror

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "keypoints": list(self.keypoints),
            "regions": {k: list(v) for k, v in self.regions.items()},
            "edges": [list(e) for e in self.edges],
            "symmetry": [list(p) for p in self.symmetry],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Skeleton:
        return cls(
            keypoints=data["keypoints"],
            regions=data.get("regions", {}),
            edges=data.get("edges", []),
            symmetry=data.get("symmetry", []),
            name=data.get("name", "skeleton"),
        )


def default_qd_mouse_skeleton() -> Skeleton:
    """The default quantum-dot mouse: 12 keypoints in 4 regions (ears 2, back 3, paws 4, tail 3)."""
    regions = {
        "ears": ["ear_left", "ear_right"],
        "back": ["back_front", "back_mid", "back_rear"],
        "paws": ["paw_front_left", "paw_front_right", "paw_hind_left", "paw_hind_right"],
        "tail": ["tail_base", "tail_mid", "tail_tip"],
    }
    keypoints = [kp for members in regions.values() for kp in members]
    edges = [
        ("ear_left", "back_front"),
        ("ear_right", "back_front"),
        ("ear_left", "ear_right"),
        ("back_front", "back_mid"),
        ("back_mid", "back_rear"),
        ("back_rear", "tail_base"),
        ("tail_base", "tail_mid"),
        ("tail_mid", "tail_tip"),
        ("back_front", "paw_front_left"),
        ("back_front", "paw_front_right"),
        ("back_rear", "paw_hind_left"),
        ("back_rear", "paw_hind_right"),
    ]
    symmetry = [
        ("ear_left", "ear_right"),
        ("paw_front_left", "paw_front_right"),
        ("paw_hind_left", "paw_hind_right"),
    ]
    return Skeleton(keypoints, regions, edges, symmetry, name="qd_mouse")
