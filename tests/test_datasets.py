"""facesearch.datasets on the real data slice (../shared/data) and on synthetic layouts."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from facesearch.datasets.base import LabeledImage
from facesearch.datasets.fiw import _relation_group, fiw_kin_pairs, fiw_members, fiw_same_person_pairs
from facesearch.datasets.lfw import read_lfw_pairs
from facesearch.datasets.master import read_master_csv
from facesearch.datasets.pairs import gallery_probe_split, identity_pairs
from facesearch.datasets.registry import detect_format, load_images
from facesearch.errors import ConfigError, DatasetError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"test data not found at {DATA}")


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _family(p: str) -> str:
    return p.split("/", 1)[0]


# --------------------------------------------------------------------------- detection


@needs_data
@pytest.mark.parametrize(
    "rel,fmt",
    [
        ("celeba", "celeba"),
        ("lfw", "lfw"),
        ("lfw/lfw-deepfunneled", "lfw"),
        ("fiw", "fiw"),
        ("fiw/train-faces", "fiw"),
        ("photos/people", "folders"),
    ],
)
def test_detect_format_real(rel, fmt):
    assert detect_format(DATA / rel) == fmt


@needs_data
@pytest.mark.parametrize(
    "rel", ["photos/deepface-unit", "lfw/pairs.txt", "photos/people/obama/obama.jpg", "nope"]
)
def test_detect_format_rejects_non_datasets(rel):
    with pytest.raises(DatasetError):
        detect_format(DATA / rel)


@needs_data
def test_detect_format_hints_at_master_csv():
    with pytest.raises(DatasetError, match="read_master_csv"):
        detect_format(DATA / "photos/deepface-unit")


def test_detect_format_empty_folder(tmp_path):
    with pytest.raises(DatasetError, match="Expected one of"):
        detect_format(tmp_path)


# --------------------------------------------------------------------------- real loaders


@needs_data
def test_celeba_counts_and_order():
    images = load_images(DATA / "celeba")
    assert len(images) == 1534
    assert len({im.identity for im in images}) == 75
    assert [im.path for im in images] == sorted(im.path for im in images)
    assert all(im.path.parent.name == "img_celeba" for im in images)
    assert load_images(DATA / "celeba", limit=10) == images[:10]
    assert load_images(DATA / "celeba", fmt="celeba") == images


@needs_data
def test_lfw_images_and_pairs():
    images = load_images(DATA / "lfw")
    assert len(images) == 807
    pairs = read_lfw_pairs(DATA / "lfw" / "pairs.txt")
    assert len(pairs) == 600
    assert sum(p.same for p in pairs) == 300
    assert {p.fold for p in pairs} == {0}
    assert pairs[0].same and not pairs[-1].same
    # Default image root is the lfw-deepfunneled folder beside pairs.txt, and every
    # pair image is one of the loaded images.
    paths = {im.path for im in images}
    assert all(p.a in paths and p.b in paths for p in pairs)
    assert read_lfw_pairs(DATA / "lfw") == pairs  # the folder is accepted too


@needs_data
def test_master_csv():
    pairs = read_master_csv(DATA / "photos/deepface-unit/master.csv")
    assert pairs and any(p.same for p in pairs) and any(not p.same for p in pairs)
    assert all(p.a.is_file() and p.b.is_file() for p in pairs)


@needs_data
def test_folders_people():
    images = load_images(DATA / "photos/people")
    assert collections.Counter(im.identity for im in images) == {"obama": 2, "biden": 1}


@needs_data
def test_fiw_images_and_members():
    images = load_images(DATA / "fiw")
    members = fiw_members(DATA / "fiw")
    assert len(images) == 3996
    assert len(members) == 766
    assert sum(len(v) for v in members.values()) == 3996
    assert fiw_members(DATA / "fiw" / "train-faces") == members
    first = images[0]
    assert first.identity == "F0001/MID1" and first.family == "F0001" and first.member == "MID1"
    assert first.get("name") == "madmoud" and first.get("gender") == "m"
    assert {im.identity for im in images} == set(members)


# --------------------------------------------------------------------------- FIW pairs


@pytest.fixture(scope="module")
def kin():
    if not DATA.is_dir():
        pytest.skip(f"test data not found at {DATA}")
    return fiw_kin_pairs(DATA / "fiw", seed=0)


@needs_data
def test_fiw_kin_positives(kin):
    members = fiw_members(DATA / "fiw")
    pos = [p for p in kin if p.same]
    assert len(pos) == 1195  # 1,736 rows; RFIW lists each sibling pair as bb and ss (and sibs)
    assert all(p.a in members and p.b in members for p in pos)
    assert len({frozenset((p.a, p.b)) for p in pos}) == len(pos)
    assert all(_family(p.a) == _family(p.b) for p in pos)
    kinds = collections.Counter(p.kind for p in pos)
    assert kinds["fs"] == 186 and kinds["sibs"] == 172 and kinds["bb"] + kinds["ss"] == 197


@needs_data
def test_fiw_kin_negatives_are_matched(kin):
    pos = [p for p in kin if p.same]
    neg = [p for p in kin if not p.same]
    assert len(neg) == len(pos)
    assert all(_family(n.a) != _family(n.b) for n in neg)
    assert len({frozenset((n.a, n.b)) for n in neg}) == len(neg)
    gender = {im.identity: im.get("gender") for im in load_images(DATA / "fiw")}
    elder, younger = collections.defaultdict(set), collections.defaultdict(set)
    for p in pos:
        g = _relation_group(p.kind)
        elder[g].add(p.a)
        younger[g].add(p.b)
        if g == "siblings":
            elder[g].add(p.b)
            younger[g].add(p.a)
    # With one negative per positive, negatives follow the positives' order.
    for p, n in zip(pos, neg):
        g = _relation_group(p.kind)
        assert n.kind == p.kind
        assert n.a in elder[g] and n.b in younger[g], (p, n)
        assert (gender[n.a], gender[n.b]) == (gender[p.a], gender[p.b]), (p, n)
    # Parent-child generation pattern: the first member is a parent somewhere.
    parents = {p.a for p in pos if p.kind in ("fs", "fd", "ms", "md")}
    assert all(n.a in parents for n in neg if n.kind in ("fs", "fd", "ms", "md"))


@needs_data
def test_fiw_kin_negatives_deterministic(kin):
    assert fiw_kin_pairs(DATA / "fiw", seed=0) == kin
    other = fiw_kin_pairs(DATA / "fiw", seed=1)
    assert [p for p in other if p.same] == [p for p in kin if p.same]
    assert [p for p in other if not p.same] != [p for p in kin if not p.same]
    two = fiw_kin_pairs(DATA / "fiw", seed=0, negatives_per_positive=2)
    assert sum(not p.same for p in two) == 2 * sum(p.same for p in two)
    assert len({frozenset((p.a, p.b)) for p in two if not p.same}) == 2 * 1195
    no_neg = fiw_kin_pairs(DATA / "fiw", negatives_per_positive=0)
    assert no_neg == [p for p in kin if p.same]


@needs_data
def test_fiw_same_person_pairs():
    members = fiw_members(DATA / "fiw")
    owner = {p: m for m, ps in members.items() for p in ps}
    pairs = fiw_same_person_pairs(DATA / "fiw", seed=0, max_per_member=2)
    pos = [p for p in pairs if p.same]
    neg = [p for p in pairs if not p.same]
    assert len(pos) == len(neg) > 0
    assert all(owner[p.a] == owner[p.b] and p.a != p.b for p in pos)
    assert max(collections.Counter(owner[p.a] for p in pos).values()) == 2
    assert all(_family(owner[p.a]) != _family(owner[p.b]) for p in neg)
    assert len({frozenset((p.a, p.b)) for p in pairs}) == len(pairs)
    assert fiw_same_person_pairs(DATA / "fiw", seed=0, max_per_member=2) == pairs
    assert fiw_same_person_pairs(DATA / "fiw", seed=5, max_per_member=2) != pairs


# --------------------------------------------------------------------------- generic sampling


@needs_data
def test_identity_pairs_on_celeba():
    images = load_images(DATA / "celeba")
    ident = {im.path: im.identity for im in images}
    pairs = identity_pairs(images, 500, 700, seed=3)
    gen = [p for p in pairs if p.same]
    imp = [p for p in pairs if not p.same]
    assert (len(gen), len(imp)) == (500, 700)
    assert all(ident[p.a] == ident[p.b] for p in gen)
    assert all(ident[p.a] != ident[p.b] for p in imp)
    assert all(p.a != p.b for p in pairs)
    assert len({frozenset((p.a, p.b)) for p in pairs}) == len(pairs)
    # Genuine pairs are spread over identities, not taken from the largest ones.
    # Each identity gives all its pairs or within one of the most any identity gives.
    per_id = collections.Counter(ident[p.a] for p in gen)
    sizes = collections.Counter(ident.values())
    top = max(per_id.values())
    assert top <= 8
    for name, k in sizes.items():
        assert per_id[name] in (k * (k - 1) // 2, top, top - 1), name
    assert identity_pairs(list(reversed(images)), 500, 700, seed=3) == pairs
    assert identity_pairs(images, 500, 700, seed=4) != pairs


def test_identity_pairs_caps_at_what_exists(tmp_path):
    sizes = (("a", 3), ("b", 2), ("c", 1))
    ims = [LabeledImage(tmp_path / f"{n}{i}.jpg", n) for n, k in sizes for i in range(k)]
    pairs = identity_pairs(ims, 100, 100, seed=0)
    # a: 3 genuine, b: 1; impostors: 3*2 + 3*1 + 2*1 = 11.
    assert sum(p.same for p in pairs) == 4
    assert sum(not p.same for p in pairs) == 11
    assert len({frozenset((p.a, p.b)) for p in pairs}) == 15
    with pytest.raises(ConfigError):
        identity_pairs(ims, -1, 1)


@needs_data
def test_gallery_probe_split_on_lfw():
    images = load_images(DATA / "lfw")
    gallery, probes = gallery_probe_split(images, 1, seed=0)
    counts = collections.Counter(im.identity for im in images)
    assert len(gallery) + len(probes) == len(images)
    assert not {im.path for im in gallery} & {im.path for im in probes}
    assert collections.Counter(im.identity for im in gallery) == {k: 1 for k in counts}
    assert {im.identity for im in probes} == {k for k, v in counts.items() if v > 1}
    assert gallery_probe_split(images, 1, seed=0) == (gallery, probes)
    g2, p2 = gallery_probe_split(images, 0.5, seed=0)
    assert {im.identity for im in p2} == {k for k, v in counts.items() if v > 1}
    with pytest.raises(ConfigError):
        gallery_probe_split(images, 0)
    with pytest.raises(ConfigError):
        gallery_probe_split(images, 1.5)


# --------------------------------------------------------------------------- synthetic layouts


def _write_lfw_pairs(path: Path, folds: int, n: int, header: str | None = None) -> None:
    lines = [header if header is not None else f"{folds}\t{n}"]
    for f in range(folds):
        lines += [f"Same_F{f}_{i}\t{i + 1}\t{i + 2}" for i in range(n)]
        lines += [f"Left_F{f}_{i}\t{i + 1}\tRight_F{f}_{i}\t{i + 3}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def test_lfw_pairs_full_format(tmp_path):
    (tmp_path / "lfw-deepfunneled").mkdir()
    pf = tmp_path / "pairs.txt"
    _write_lfw_pairs(pf, 10, 300)
    pairs = read_lfw_pairs(pf)
    assert len(pairs) == 6000
    assert collections.Counter(p.fold for p in pairs) == {f: 600 for f in range(10)}
    for f in range(10):
        block = pairs[f * 600 : (f + 1) * 600]
        assert all(p.same and p.kind == "same" for p in block[:300])
        assert not any(p.same for p in block[300:])
    p = pairs[3 * 600 + 5]  # fold 3, same line 6
    assert p.a == tmp_path / "lfw-deepfunneled" / "Same_F3_5" / "Same_F3_5_0006.jpg"
    assert p.b.name == "Same_F3_5_0007.jpg" and p.fold == 3
    q = pairs[9 * 600 + 300 + 299]
    assert q.a.name == "Left_F9_299_0300.jpg" and q.b.name == "Right_F9_299_0302.jpg" and q.fold == 9
    other = read_lfw_pairs(pf, images_root=tmp_path / "elsewhere")
    assert other[0].a.parent.parent == tmp_path / "elsewhere"


def test_lfw_pairs_dev_format(tmp_path):
    pf = tmp_path / "pairsDevTrain.txt"
    _write_lfw_pairs(pf, 1, 4, header="4")
    pairs = read_lfw_pairs(pf)
    assert len(pairs) == 8 and {p.fold for p in pairs} == {0}
    assert [p.same for p in pairs] == [True] * 4 + [False] * 4
    assert pairs[0].a.parent.parent == tmp_path  # no image folder beside it: the folder itself


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "empty"),
        ("two\tthree\n", "header"),
        ("1\t2\nA\t1\t2\nB\t1\t2\nA\t1\tB\t1\n", "4 pair lines"),  # too few lines
        ("1\t1\nA\t1\tB\t2\nA\t1\tB\t1\n", "same-person"),  # different where same expected
        ("1\t1\nA\t1\t2\nA\t1\t2\n", "different-person"),
        ("1\t1\nA\t0\t2\nA\t1\tB\t1\n", "positive integer"),
    ],
)
def test_lfw_pairs_bad_files(tmp_path, text, match):
    pf = tmp_path / "pairs.txt"
    pf.write_text(text)
    with pytest.raises(DatasetError, match=match):
        read_lfw_pairs(pf)


def test_lfw_root_is_name_folder_with_pairs_beside(tmp_path):
    root = tmp_path / "faces"
    _touch(root / "Ann_A" / "Ann_A_0001.jpg")
    _touch(root / "Bob_B" / "Bob_B_0001.jpg")
    (tmp_path / "pairs.txt").write_text("1\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\n")
    assert detect_format(root) == "lfw"
    assert [im.identity for im in load_images(root)] == ["Ann_A", "Bob_B"]


def test_folders_extensions_and_hidden_files(tmp_path):
    for name in ("a/1.JPG", "a/2.Png", "a/3.jpeg", "a/4.webp", "a/5.bmp", "b/x.jpg"):
        _touch(tmp_path / name)
    for name in ("a/notes.txt", "a/._1.jpg", ".hidden/y.jpg", "loose.jpg"):
        _touch(tmp_path / name)
    images = load_images(tmp_path)
    assert [(im.identity, im.path.name) for im in images] == [
        ("a", "1.JPG"), ("a", "2.Png"), ("a", "3.jpeg"), ("a", "4.webp"), ("a", "5.bmp"), ("b", "x.jpg"),
    ]
    assert load_images(tmp_path, limit=2) == images[:2]
    assert load_images(tmp_path, limit=0) == []


def test_celeba_synthetic(tmp_path):
    img = tmp_path / "img_align_celeba"
    for n in ("000002.jpg", "000001.jpg", "000003.jpg"):
        _touch(img / n)
    (tmp_path / "identity_CelebA.txt").write_text(
        "000002.jpg 7\n000001.jpg 7\n\n000003.jpg 9\n000004.jpg 9\n"
    )
    images = load_images(tmp_path)
    assert [(im.path.name, im.identity) for im in images] == [
        ("000001.jpg", "7"), ("000002.jpg", "7"), ("000003.jpg", "9"),  # 000004 is absent: skipped
    ]
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 7 extra\n")
    with pytest.raises(DatasetError, match=":1:"):
        load_images(tmp_path)


def test_celeba_without_images(tmp_path):
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 7\n")
    with pytest.raises(DatasetError, match="image folder"):
        load_images(tmp_path)


def test_csv_format(tmp_path):
    absolute = _touch(tmp_path / "elsewhere" / "z.jpg")
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f"path,label,source\nimgs/b.jpg,bob,web\nimgs/a.jpg,ann,\n{absolute},zed,cam\n")
    assert detect_format(csv_file) == "csv"
    images = load_images(csv_file)
    assert [(im.path, im.identity) for im in images] == sorted(
        [(tmp_path / "imgs/b.jpg", "bob"), (tmp_path / "imgs/a.jpg", "ann"), (absolute, "zed")]
    )
    assert {im.identity: im.extra for im in images}["bob"] == (("source", "web"),)
    assert {im.identity: im.extra for im in images}["ann"] == ()


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "empty"),
        ("file,person\na.jpg,x\n", "'path' and 'label'"),
        ("file_x,file_y,Decision\na.jpg,b.jpg,Yes\n", "read_master_csv"),
        ("path,label\na.jpg,\n", ":2: empty"),
    ],
)
def test_csv_bad_files(tmp_path, text, match):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(DatasetError, match=match):
        load_images(f)


def test_master_csv_bad_decision(tmp_path):
    f = tmp_path / "master.csv"
    f.write_text("file_x,file_y,Decision\na.jpg,b.jpg,Maybe\n")
    with pytest.raises(DatasetError, match="Yes or No"):
        read_master_csv(f)


def test_fiw_synthetic_layout(tmp_path):
    faces = tmp_path / "train-faces"
    for fam, mids in (("F0001", 3), ("F0002", 3)):
        (faces / fam).mkdir(parents=True)
        rows = ["MID,1,2,3,Name,Gender", "1,0,5,4,dad,m", "2,5,0,4,mum,f", "3,1,1,0,kid,m"]
        (faces / fam / "mid.csv").write_text("\n".join(rows) + "\n")
        for m in range(1, mids + 1):
            _touch(faces / fam / f"MID{m}" / "P00001_face0.jpg")
    _touch(faces / "F0002" / "unrelated_and_nonfaces" / "x.jpg")
    (tmp_path / "train-pairs.csv").write_text(
        "p1,p2,ptype\nF0001/MID1,F0001/MID3,fs\nF0002/MID2,F0002/MID3,ms\nF0009/MID1,F0009/MID2,fs\n"
    )
    assert detect_format(tmp_path) == "fiw"
    assert len(fiw_members(tmp_path)) == 6
    pairs = fiw_kin_pairs(tmp_path, seed=0)
    assert [(p.a, p.b, p.same) for p in pairs if p.same] == [
        ("F0001/MID1", "F0001/MID3", True), ("F0002/MID2", "F0002/MID3", True),  # F0009 has no photos
    ]
    neg = [p for p in pairs if not p.same]
    # fs: a father (only F0001/MID1 is one) with a son from another family (F0002/MID3).
    assert (neg[0].a, neg[0].b, neg[0].kind) == ("F0001/MID1", "F0002/MID3", "fs")
    assert neg[1].kind == "ms" and _family(neg[1].a) != _family(neg[1].b)
    assert fiw_kin_pairs(faces, seed=0) == pairs  # ROOT may be train-faces itself
    with pytest.raises(DatasetError, match="no such FIW pairs file"):
        fiw_kin_pairs(tmp_path, pairs_file=tmp_path / "missing.csv")
    (tmp_path / "train-pairs.csv").unlink()
    with pytest.raises(DatasetError, match="train-pairs.csv not found"):
        fiw_kin_pairs(tmp_path)


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError):
        load_images(tmp_path, fmt="imagenet")
    with pytest.raises(ConfigError):
        load_images(tmp_path, limit=-1)
    with pytest.raises(DatasetError):
        load_images(tmp_path / "missing")
    with pytest.raises(DatasetError):
        load_images(tmp_path, fmt="folders")  # empty folder: no images
    with pytest.raises(DatasetError):
        load_images(tmp_path, fmt="fiw")
    with pytest.raises(DatasetError):
        load_images(tmp_path, fmt="lfw")
    with pytest.raises(DatasetError):
        read_master_csv(tmp_path / "master.csv")


# --------------------------------------------------------------------------- families


def test_families_layout(tmp_path):
    """FAMILY/PERSON/*.jpg: identities are FAMILY/PERSON (two families' "mum" are two
    people), each with its family; chosen explicitly, never detected."""
    for fam, people in (("smith", ("mum", "dad", "kid")), ("Nguyễn", ("mum", "bà"))):
        for person in people:
            _touch(tmp_path / fam / person / "1.jpg")
            _touch(tmp_path / fam / person / "2.png")
    _touch(tmp_path / "smith" / "empty-folder" / "notes.txt")
    with pytest.raises(DatasetError, match="--families"):
        detect_format(tmp_path)  # the same shape as PERSON/EVENT/*.jpg: never guessed
    images = load_images(tmp_path, "families")
    assert len(images) == 10
    by = {im.identity: (im.family, im.member) for im in images}
    assert by == {"smith/mum": ("smith", "mum"), "smith/dad": ("smith", "dad"), "smith/kid": ("smith", "kid"),
                  "Nguyễn/mum": ("Nguyễn", "mum"), "Nguyễn/bà": ("Nguyễn", "bà")}
    assert [im.path for im in images] == sorted(im.path for im in images)


@pytest.mark.parametrize("bad,match", [("fam\u202eily", "cannot name a family"), ("---", "cannot name a family")])
def test_families_layout_checks_family_names(tmp_path, bad, match):
    _touch(tmp_path / bad / "ann" / "1.jpg")
    with pytest.raises(DatasetError, match=match):
        load_images(tmp_path, "families")


def test_families_layout_checks_people_and_loose_photos(tmp_path):
    _touch(tmp_path / "smith" / "ann\u200b" / "1.jpg")
    with pytest.raises(DatasetError, match="cannot name a person"):
        load_images(tmp_path, "families")
    (tmp_path / "smith" / "ann\u200b" / "1.jpg").unlink()
    _touch(tmp_path / "smith" / "ann" / "1.jpg")
    _touch(tmp_path / "smith" / "group.jpg")
    with pytest.raises(DatasetError, match="directly in the family folder"):
        load_images(tmp_path, "families")


def test_families_layout_is_not_the_folders_layout(tmp_path):
    _touch(tmp_path / "obama" / "1.jpg")
    with pytest.raises(DatasetError, match="no images"):
        load_images(tmp_path, "families")  # PERSON/*.jpg has no person folders inside
    assert detect_format(tmp_path) == "folders"


def test_csv_family_column(tmp_path):
    f = tmp_path / "list.csv"
    f.write_text("path,label,family,source\na.jpg,ann,smith,web\nb.jpg,ann,smith,\nc.jpg,bob, Jones \n"
                 "d.jpg,zed,,cam\n")
    images = load_images(f)
    assert {(im.identity, im.family) for im in images} == {("ann", "smith"), ("bob", "Jones"), ("zed", None)}
    assert {im.identity: im.extra for im in images}["zed"] == (("source", "cam"),)  # family is not an extra


@pytest.mark.parametrize(
    "rows,match",
    [
        ("a.jpg,ann,smith\nb.jpg,ann,jones\n", r":3: 'ann' is in family 'jones' here but in 'smith' on line 2"),
        ("a.jpg,ann,smi\u200bth\n", ":2: family .* is not usable: .*invisible"),
        ("a.jpg,ann,...\n", ":2: family '...' is not usable: it has no letter or digit"),
    ],
)
def test_csv_family_column_checked(tmp_path, rows, match):
    f = tmp_path / "list.csv"
    f.write_text("path,label,family\n" + rows)
    with pytest.raises(DatasetError, match=match):
        load_images(f)


@needs_data
def test_fiw_parents_from_mid_csv():
    """A child's parents (mid.csv's relationship matrix) are in ``extra``: every
    parent-child pair of train-pairs.csv among them."""
    import csv

    images = {im.identity: im for im in load_images(DATA / "fiw")}
    assert images["F0001/MID3"].get("parents") == "F0001/MID1;F0001/MID2"
    assert images["F0001/MID1"].get("parents") is None
    listed = {(r["p1"], r["p2"]) for r in csv.DictReader((DATA / "fiw" / "train-pairs.csv").open())
              if r["ptype"] in ("fs", "fd", "ms", "md")}
    known = {(p, child) for child, im in images.items() for p in (im.get("parents") or "").split(";") if p}
    assert listed and {(a, b) for a, b in listed if a in images and b in images} <= known
