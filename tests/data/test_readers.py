"""Each benchmark reader on a tiny tree built here: keys, labels, splits, missing subsets."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from mfrn.data.readers import READERS, DatasetConfig, build_reader, build_reader_from_config, detect_dataset
from mfrn.data.records import FAKE, REAL, UNSPLIT, LabelError, parse_key
from tests.data.dataset_trees import (
    build_celebdf,
    build_deeperforensics,
    build_dfd,
    build_dfdc,
    build_dfdcp,
    build_ffiw,
    build_ffpp,
    build_folder,
    touch,
)


def by_key(reader, split=None):
    return {r.key: r for r in reader.records(split)}


def assert_well_formed(records):
    keys = [r.key for r in records]
    assert len(keys) == len(set(keys)), "keys must be unique"
    for r in records:
        assert parse_key(r.key) == (r.dataset, r.method, r.compression, r.video_id)
        assert r.label in (REAL, FAKE)
        assert (r.method == "original") == (r.label == REAL)
        assert r.path.is_file()


# -- FaceForensics++ ---------------------------------------------------------------------------
def test_ffpp_keys_labels_and_pair_splits(tmp_path):
    reader = build_reader("ffpp", build_ffpp(tmp_path, compression="c23"), compression="c23")
    records = list(reader.records())
    assert_well_formed(records)
    keys = {r.key: r for r in records}
    assert len(records) == 6 + 4 * 6  # 6 reals, 6 fakes (a_b and b_a of 3 pairs) per method
    # Methods share file names: the key keeps them apart.
    assert {"ffpp/Deepfakes/c23/000_003", "ffpp/Face2Face/c23/000_003"} <= set(keys)
    assert keys["ffpp/original/c23/000"].label == REAL
    assert keys["ffpp/Deepfakes/c23/003_000"].label == FAKE
    # Reals a, b and fakes a_b, b_a take the pair's split.
    for key in ("ffpp/original/c23/000", "ffpp/original/c23/003", "ffpp/FaceSwap/c23/000_003", "ffpp/FaceSwap/c23/003_000"):
        assert keys[key].split == "train"
    for key in ("ffpp/original/c23/004", "ffpp/original/c23/005", "ffpp/NeuralTextures/c23/005_004"):
        assert keys[key].split == "test"
    assert {r.split for r in reader.records("val")} == {"val"}
    assert {r.video_id for r in reader.records("val") if r.method == "original"} == {"001", "002"}
    assert keys["ffpp/Deepfakes/c23/000_003"].mask_path == tmp_path / "manipulated_sequences/Deepfakes/masks/videos/000_003.mp4"
    assert keys["ffpp/original/c23/000"].mask_path is None
    assert any("train.json: 1 pairs; the published file holds 360" in w for w in reader.warnings)


def test_ffpp_streams_sorted_and_deterministic(tmp_path):
    reader = build_reader("ffpp", build_ffpp(tmp_path))
    stream = reader.records()
    assert next(stream).key == "ffpp/original/raw/000"  # an iterator, not a list
    first, second = [r.key for r in reader.records()], [r.key for r in reader.records()]
    assert first == second
    for method in ("original", "Deepfakes"):
        ids = [r.video_id for r in reader.records() if r.method == method]
        assert ids == sorted(ids)


def test_ffpp_missing_faceshifter_and_masks_are_reported_not_fatal(tmp_path):
    reader = build_reader("ffpp", build_ffpp(tmp_path, with_masks=False))
    assert "FaceShifter" in reader.missing
    assert "Deepfakes/masks" in reader.missing
    assert any("FaceShifter" in w for w in reader.warnings)
    records = list(reader.records())
    assert records and all(r.mask_path is None for r in records)
    assert not any(r.method == "FaceShifter" for r in records)


def test_ffpp_methods_subset_and_faceshifter(tmp_path):
    build_ffpp(tmp_path, methods=("Deepfakes", "FaceShifter"))
    reader = build_reader("ffpp", tmp_path, methods=["FaceShifter"])
    assert {r.method for r in reader.records()} == {"original", "FaceShifter"}
    assert reader.missing == []
    with pytest.raises(ValueError, match="unknown FF\\+\\+ methods"):
        build_reader("ffpp", tmp_path, methods=["DeepFaceLab"])


def test_ffpp_video_in_no_split_file_is_skipped_with_a_warning(tmp_path):
    root = build_ffpp(tmp_path)
    touch(root / "original_sequences/youtube/raw/videos/999.mp4")
    reader = build_reader("ffpp", root)
    assert "ffpp/original/raw/999" not in by_key(reader)
    assert any("999" in w and "no split file" in w for w in reader.warnings)


def test_ffpp_defaults_to_raw_as_sbi_and_names_the_compression_a_tree_holds(tmp_path):
    """SBI trains and tests on raw (c0): that is the reader's default; a c23-only tree says how to read it."""
    import inspect

    from mfrn.data.readers.ffpp import FFPPReader

    assert inspect.signature(FFPPReader).parameters["compression"].default == "raw"
    reader = build_reader("ffpp", build_ffpp(tmp_path / "raw"))
    assert reader.compression == "raw" and "original" not in reader.missing
    assert {r.compression for r in reader.records()} == {"raw"}
    only_c23 = build_reader("ffpp", build_ffpp(tmp_path / "c23", compression="c23"))
    assert "original" in only_c23.missing and list(only_c23.records()) == []
    assert any("this tree holds c23: pass compression=c23" in w for w in only_c23.warnings)
    assert {r.compression for r in build_reader("ffpp", tmp_path / "c23", compression="c23").records()} == {"c23"}


def test_ffpp_without_split_files_says_where_they_come_from(tmp_path):
    reader = build_reader("ffpp", build_ffpp(tmp_path, with_splits=False))
    assert any("dataset/splits" in w and "FaceForensics" in w for w in reader.warnings)
    records = list(reader.records())
    assert len(records) == 30 and {r.split for r in records} == {UNSPLIT}
    with pytest.raises(FileNotFoundError, match="dataset/splits"):
        list(reader.records("train"))


def test_ffpp_split_file_elsewhere_and_raw_alias(tmp_path):
    root = build_ffpp(tmp_path / "ff", compression="raw", with_splits=False)
    splits = tmp_path / "my_splits"
    splits.mkdir()
    (splits / "test.json").write_text(json.dumps([["004", "005"]]))
    reader = build_reader("ffpp", root, compression="c0", splits_dir=splits)
    assert reader.compression == "raw"  # FF++ names its c0 folder "raw"
    test = list(reader.records("test"))
    assert {r.key for r in test if r.method == "original"} == {"ffpp/original/raw/004", "ffpp/original/raw/005"}
    assert any("['train', 'val']" in w for w in reader.warnings)


def test_ffpp_malformed_split_file_names_the_file(tmp_path):
    root = build_ffpp(tmp_path)
    (root / "splits" / "val.json").write_text(json.dumps([["001", "002", "003"]]))
    with pytest.raises(ValueError, match=r"val\.json: entry 0"):
        build_reader("ffpp", root)


# -- DFD ---------------------------------------------------------------------------------------
def test_dfd_all_test_with_keys_and_labels(tmp_path):
    reader = build_reader("dfd", build_dfd(tmp_path))
    records = list(reader.records())
    assert_well_formed(records)
    keys = by_key(reader)
    assert keys["dfd/original/raw/01__kitchen_pan"].label == REAL
    assert keys["dfd/DeepFakeDetection/raw/01_02__kitchen_pan__ABCDEF12"].label == FAKE
    assert {r.split for r in records} == {"test"}
    assert list(reader.records("train")) == []
    assert "DeepFakeDetection/masks" in reader.missing  # optional
    assert list(build_reader("dfd", tmp_path, compression="c23").records()) == []


# -- Celeb-DF ----------------------------------------------------------------------------------
def test_celebdf_test_list_one_means_real(tmp_path):
    reader = build_reader("celebdf_v2", build_celebdf(tmp_path))
    records = list(reader.records())
    assert_well_formed(records)
    keys = {r.key: r for r in records}
    assert len(records) == 7
    youtube = keys["celebdf_v2/original/raw/YouTube-real/00000"]
    assert (youtube.label, youtube.split) == (REAL, "test")  # flag 1 in the list = real
    fake = keys["celebdf_v2/Celeb-synthesis/raw/id0_id2_0002"]
    assert (fake.label, fake.split) == (FAKE, "test")
    assert keys["celebdf_v2/Celeb-synthesis/raw/id0_id1_0000"].split == "train"
    assert {r.key for r in reader.records("test")} == {
        "celebdf_v2/original/raw/YouTube-real/00000",
        "celebdf_v2/original/raw/Celeb-real/id1_0001",
        "celebdf_v2/Celeb-synthesis/raw/id0_id2_0002",
    }


def test_celebdf_unknown_flag_names_file_line_and_label(tmp_path):
    build_celebdf(tmp_path, test_lines=["1 YouTube-real/00000.mp4", "2 Celeb-synthesis/id0_id2_0002.mp4"])
    with pytest.raises(LabelError) as error:
        build_reader("celebdf_v2", tmp_path)
    message = str(error.value)
    assert "List_of_testing_videos.txt, line 2" in message and "'2'" in message


def test_celebdf_flag_contradicting_folder_is_an_error(tmp_path):
    build_celebdf(tmp_path, test_lines=["0 YouTube-real/00000.mp4"])  # 0 = fake, but a real folder
    with pytest.raises(ValueError, match="line 1.*contradicts"):
        build_reader("celebdf_v2", tmp_path)


def test_celebdf_listed_but_absent_video_is_an_entry_not_a_record(tmp_path):
    build_celebdf(tmp_path, test_lines=["0 Celeb-synthesis/id9_id8_0009.mp4"])
    reader = build_reader("celebdf_v1", tmp_path)
    absent = "celebdf_v1/Celeb-synthesis/raw/id9_id8_0009"
    assert absent in {r.key for r in reader.entries("test")}
    assert absent not in by_key(reader)


# -- DFDC --------------------------------------------------------------------------------------
def test_dfdc_metadata_strings_and_csv_one_means_fake(tmp_path):
    reader = build_reader("dfdc", build_dfdc(tmp_path))
    records = list(reader.records())
    assert_well_formed(records)
    keys = {r.key: r for r in records}
    assert keys["dfdc/original/raw/dfdc_train_part_0/aaaaaaaaaa"].label == REAL
    assert keys["dfdc/fake/raw/dfdc_train_part_0/bbbbbbbbbb"].label == FAKE
    assert keys["dfdc/fake/raw/test/cccccccccc"].label == FAKE  # labels.csv: 1 = fake
    assert keys["dfdc/original/raw/test/dddddddddd"].label == REAL
    assert {r.split for r in reader.records("train")} == {"train"}
    assert len(list(reader.records("test"))) == 2
    assert "dfdc_train_part_1" in reader.missing  # 49 of 50 parts absent: reported, not fatal


def test_dfdc_unknown_metadata_label_names_file_and_line(tmp_path):
    reader = build_reader("dfdc", build_dfdc(tmp_path, part_label="MAYBE"))
    with pytest.raises(LabelError) as error:
        list(reader.records("train"))
    message = str(error.value)
    # line 7 holds the entry's key in build_dfdc's indented metadata.json
    assert "metadata.json, line 7:" in message and "'MAYBE'" in message


def test_dfdc_unknown_csv_label_names_line(tmp_path):
    reader = build_reader("dfdc", build_dfdc(tmp_path, test_rows=["filename,label", "cccccccccc.mp4,1", "dddddddddd.mp4,yes"]))
    with pytest.raises(LabelError, match=r"labels\.csv, line 3: unknown label 'yes'"):
        list(reader.records("test"))


# -- DFDC preview ------------------------------------------------------------------------------
def test_dfdcp_strings_and_test_set(tmp_path):
    reader = build_reader("dfdcp", build_dfdcp(tmp_path))
    records = list(reader.records())
    assert_well_formed(records)
    keys = {r.key: r for r in records}
    # The same file name under method_A and method_B yields two keys.
    assert "dfdcp/method_A/raw/1255229/1255229_A/1255229_A_001_x" in keys
    assert "dfdcp/method_B/raw/1255229/1255229_B/1255229_A_001_x" in keys
    assert keys["dfdcp/original/raw/1255229/1255229_A_001"].label == REAL
    test = list(reader.records("test"))
    assert Counter(r.label for r in test) == {REAL: 1, FAKE: 1}


def test_dfdcp_unknown_label_names_line(tmp_path):
    root = build_dfdcp(tmp_path)
    index = json.loads((root / "dataset.json").read_text())
    index["method_A/1255229/1255229_A/1255229_A_001_x.mp4"]["label"] = "deepfake"
    (root / "dataset.json").write_text(json.dumps(index, indent=1))
    with pytest.raises(LabelError, match=r"dataset\.json, line \d+: unknown label 'deepfake'"):
        list(build_reader("dfdcp", root).records())


# -- FFIW --------------------------------------------------------------------------------------
def test_ffiw_source_real_target_fake_val_is_test(tmp_path):
    reader = build_reader("ffiw", build_ffiw(tmp_path))
    records = list(reader.records())
    assert_well_formed(records)
    keys = {r.key: r for r in records}
    assert len(records) == 8
    assert keys["ffiw/original/raw/val/00001"].label == REAL
    assert keys["ffiw/target/raw/val/00001"].label == FAKE
    assert keys["ffiw/target/raw/val/00001"].split == "test"
    assert keys["ffiw/target/raw/train/00001"].split == "train"
    # The release folder itself is accepted as the root too.
    assert len(list(build_reader("ffiw", tmp_path / "FFIW10K-v1-release").records())) == 8


def test_ffiw_val_only_copy_reports_train_missing(tmp_path):
    reader = build_reader("ffiw", build_ffiw(tmp_path, with_train=False))
    assert set(reader.missing) == {"source/train", "target/train"}
    assert len(list(reader.records("test"))) == 4


# -- DeeperForensics ---------------------------------------------------------------------------
def test_deeperforensics_split_lists_and_perturbations(tmp_path):
    reader = build_reader("deeperforensics", build_deeperforensics(tmp_path))
    records = list(reader.records())
    assert_well_formed(records)
    keys = {r.key: r for r in records}
    assert keys["deeperforensics/end_to_end/raw/000_M101"].split == "train"
    assert keys["deeperforensics/end_to_end_level_1_JPEG/raw/000_M101"].split == "train"
    assert keys["deeperforensics/end_to_end/raw/002_M103"].split == "test"
    source = keys["deeperforensics/original/raw/M101/BlendShape/camera_front/M101_BlendShape"]
    assert (source.label, source.split) == (REAL, UNSPLIT)
    assert {r.method for r in reader.records("test")} == {"end_to_end", "end_to_end_level_1_JPEG"}
    only = build_reader("deeperforensics", tmp_path, perturbations=["end_to_end"], include_source=False)
    assert {r.method for r in only.records()} == {"end_to_end"}


# -- the generic folder reader -----------------------------------------------------------------
def test_folder_real_and_fake_subfolders(tmp_path):
    reader = build_reader("folder", build_folder(tmp_path))
    records = list(reader.records())
    assert_well_formed(records)
    assert {r.key: r.label for r in records} == {
        "folder/original/raw/clip_a": REAL,
        "folder/original/raw/holiday/clip_b": REAL,
        "folder/fake/raw/clip_a": FAKE,
    }
    touch(tmp_path / "real" / "notes.txt")  # not a video: ignored
    assert len(list(reader.records())) == 3
    assert {r.split for r in records} == {"test"}


def test_folder_reads_images_too(tmp_path):
    """Issue 10 item 13: images in real/ were silently ignored."""
    build_folder(tmp_path)
    touch(tmp_path / "real" / "clip_a.png")  # same stem as a video: a separate item
    touch(tmp_path / "real" / "portrait.JPG")
    records = list(build_reader("folder", tmp_path).records())
    assert_well_formed(records)
    assert {r.key for r in records} >= {"folder/original/raw/clip_a", "folder/original/raw/clip_a.png",
                                         "folder/original/raw/portrait.JPG"}
    assert len(records) == 5


def test_folder_csv_labels_and_errors(tmp_path):
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        touch(tmp_path / "videos" / name)
    rows = ["path,label", "videos/a.mp4,real", "videos/b.mp4,FAKE", "videos/c.mp4,0", "videos/d.mp4,1,train"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    reader = build_reader("folder", tmp_path, csv_file="labels.csv")
    labels = {r.video_id: (r.label, r.split) for r in reader.records()}
    assert labels == {
        "videos/a": (REAL, "test"), "videos/b": (FAKE, "test"), "videos/c": (REAL, "test"), "videos/d": (FAKE, "train"),
    }
    (tmp_path / "bad.csv").write_text("videos/a.mp4,real\nvideos/b.mp4,maybe\n")
    with pytest.raises(LabelError, match=r"bad\.csv, line 2: unknown label 'maybe'"):
        list(build_reader("folder", tmp_path, csv_file="bad.csv").records())
    with pytest.raises(FileNotFoundError, match="real/ and fake/"):
        build_reader("folder", tmp_path / "videos")


# -- registry, config and detection ------------------------------------------------------------
def test_registry_names_and_unknown_reader(tmp_path):
    names = {"ffpp", "dfd", "celebdf_v1", "celebdf_v2", "dfdc", "dfdcp", "ffiw", "deeperforensics", "folder"}
    assert set(READERS.names()) >= names
    with pytest.raises(KeyError, match="known: "):
        build_reader("faceforensics", tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        build_reader("ffpp", tmp_path / "absent")


def test_dataset_config_builds_reader(tmp_path):
    build_ffpp(tmp_path, compression="c40")
    config = DatasetConfig(name="ffpp", root=str(tmp_path), compression="c40", methods=["Deepfakes"])
    reader = build_reader_from_config(config)
    assert {r.method for r in reader.records()} == {"original", "Deepfakes"}
    with pytest.raises(ValueError, match="root is empty"):
        build_reader_from_config(DatasetConfig())


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (build_ffpp, "ffpp"),
        (build_dfd, "dfd"),
        (build_celebdf, "celebdf_v2"),
        (build_dfdc, "dfdc"),
        (build_dfdcp, "dfdcp"),
        (build_ffiw, "ffiw"),
        (build_deeperforensics, "deeperforensics"),
        (build_folder, "folder"),
    ],
)
def test_detect_dataset(tmp_path, builder, expected):
    root = builder(tmp_path / "data")
    assert detect_dataset(root) == expected
    build_reader(expected, root)  # the guessed reader accepts the tree


def test_detect_dataset_celebdf_v1_and_unknown(tmp_path):
    assert detect_dataset(build_celebdf(tmp_path / "Celeb-DF-v1")) == "celebdf_v1"
    (tmp_path / "empty").mkdir()
    assert detect_dataset(tmp_path / "empty") is None
    assert detect_dataset(tmp_path / "absent") is None
