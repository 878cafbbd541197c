import warnings

import pytest

from vidssl.data.catalogs import (
    Catalog,
    VideoRecord,
    csv_catalog,
    folder,
    hmdb51,
    kinetics400,
    load_catalog,
    ucf101,
)


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_crlf(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())


# ---- UCF101 -------------------------------------------------------------------------------

UCF_CLASSES = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]


def make_ucf(tmp_path, skip=()):
    root = tmp_path / "UCF-101"
    videos = {
        "ApplyEyeMakeup": ["v_ApplyEyeMakeup_g08_c01", "v_ApplyEyeMakeup_g01_c01"],
        # On disk the folder and files say "HandStand", the split files "Handstand".
        "HandStandPushups": ["v_HandStandPushups_g08_c01", "v_HandStandPushups_g01_c02"],
        "YoYo": ["v_YoYo_g08_c01", "v_YoYo_g01_c01"],
    }
    for cls, names in videos.items():
        for name in names:
            if name not in skip:
                touch(root / cls / f"{name}.avi")
    lists = tmp_path / "ucfTrainTestlist"
    write_crlf(lists / "classInd.txt", [f"{i + 1} {c}" for i, c in enumerate(UCF_CLASSES)])
    write_crlf(lists / "trainlist01.txt", [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
        "HandstandPushups/v_HandstandPushups_g08_c01.avi 2",
        "YoYo/v_YoYo_g08_c01.avi 3",
    ])
    write_crlf(lists / "testlist01.txt", [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
        "HandstandPushups/v_HandstandPushups_g01_c02.avi",
        "YoYo/v_YoYo_g01_c01.avi",
    ])
    return root, lists


def test_ucf101_official_files_with_crlf_and_case_quirks(tmp_path):
    root, _ = make_ucf(tmp_path)
    train = ucf101(root, split=1, subset="train")  # finds ../ucfTrainTestlist by itself
    assert isinstance(train, Catalog) and len(train) == 3
    assert train.classes == UCF_CLASSES
    assert train.labels().tolist() == [0, 1, 2]
    assert train.records[1].path.endswith("HandStandPushups/v_HandStandPushups_g08_c01.avi")
    test = ucf101(root, split=1, subset="test")
    assert test.labels().tolist() == [0, 1, 2]  # labels from the path's folder
    assert test.records[1].path.endswith("v_HandStandPushups_g01_c02.avi")
    assert all(r.path.startswith("/") for r in test.records)
    assert test.name == "ucf101-split1-test"


def test_ucf101_missing_videos_one_aggregated_warning(tmp_path):
    root, lists = make_ucf(tmp_path, skip=("v_YoYo_g08_c01",))
    with pytest.warns(UserWarning) as record:
        cat = ucf101(root, split=1, subset="train", split_dir=lists)
    assert len(record) == 1
    message = str(record[0].message)
    assert "1 of 3" in message and "v_YoYo_g08_c01.avi" in message and "trainlist01.txt" in message
    assert len(cat) == 2


def test_ucf101_errors_name_the_file(tmp_path):
    root, lists = make_ucf(tmp_path)
    with pytest.raises(FileNotFoundError, match="trainlist02.txt"):
        ucf101(root, split=2, subset="train")
    write_crlf(lists / "trainlist02.txt", ["YoYo/v_YoYo_g08_c01.avi 1"])
    with pytest.raises(ValueError, match=r"trainlist02.txt, line 1: label 1 is class 'ApplyEyeMakeup'"):
        ucf101(root, split=2, subset="train")
    write_crlf(lists / "trainlist03.txt", ["YoYo/v_YoYo_g08_c01.avi 3", "YoYo/v_YoYo_g08_c01.avi three"])
    with pytest.raises(ValueError, match=r"trainlist03.txt, line 2"):
        ucf101(root, split=3, subset="train")
    write_crlf(lists / "testlist03.txt", ["Juggling/v_Juggling_g01_c01.avi"])
    with pytest.raises(ValueError, match=r"testlist03.txt, line 1.*Juggling"):
        ucf101(root, split=3, subset="test")
    with pytest.raises(ValueError, match="subset"):
        ucf101(root, subset="val")
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        ucf101(tmp_path / "UCF-101" / "YoYo")


def test_ucf101_none_remaining_is_an_error(tmp_path):
    root, lists = make_ucf(tmp_path, skip=("v_ApplyEyeMakeup_g01_c01", "v_HandStandPushups_g01_c02",
                                           "v_YoYo_g01_c01"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FileNotFoundError, match="testlist01.txt"):
            ucf101(root, subset="test", split_dir=lists)


# ---- HMDB51 -------------------------------------------------------------------------------


def make_hmdb(tmp_path):
    root = tmp_path / "hmdb51"
    splits = tmp_path / "testTrainMulti_7030_splits"
    table = {
        "brush_hair": [("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 1), ("Blonde_brush_hair_f_nm_np2_le_goo_1.avi", 2),
                       ("Brushing_my_hair_u_nm_np1_fr_goo_0.avi", 0)],
        "cartwheel": [("(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi", 2),
                      ("Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi", 1)],
    }
    for cls, rows in table.items():
        for name, _ in rows:
            touch(root / cls / name)
        for split in (1, 2):
            # The official files end each line with a space, and use CRLF.
            write_crlf(splits / f"{cls}_test_split{split}.txt", [f"{name} {tag} " for name, tag in rows])
    return root, splits


def test_hmdb51_tags_and_sorted_classes(tmp_path):
    root, _ = make_hmdb(tmp_path)
    train = hmdb51(root, split=1, subset="train")
    assert train.classes == ["brush_hair", "cartwheel"]
    assert [r.label for r in train.records] == [0, 1]
    assert train.records[0].path.endswith("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi")
    test = hmdb51(root, split=2, subset="test")
    assert sorted(r.path.rsplit("/", 1)[1] for r in test.records) == [
        "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi", "Blonde_brush_hair_f_nm_np2_le_goo_1.avi"]
    all_paths = {r.path for r in train.records} | {r.path for r in test.records}
    assert not any("Brushing_my_hair" in p for p in all_paths)  # tag 0: unused


def test_hmdb51_errors(tmp_path):
    root, splits = make_hmdb(tmp_path)
    with pytest.raises(FileNotFoundError, match="_test_split3.txt"):
        hmdb51(root, split=3)
    write_crlf(splits / "brush_hair_test_split1.txt", ["a.avi 1", "b.avi 7"])
    with pytest.raises(ValueError, match=r"brush_hair_test_split1.txt, line 2"):
        hmdb51(root, split=1)
    (root / "cartwheel" / "Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi").unlink()
    write_crlf(splits / "brush_hair_test_split2.txt", ["April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1"])
    with pytest.warns(UserWarning, match="1 of 2 videos"):
        cat = hmdb51(root, split=2, subset="train")
    assert len(cat) == 1


# ---- Kinetics-400 -------------------------------------------------------------------------

K400_HEADER = "label,youtube_id,time_start,time_end,split"


def test_kinetics400_layouts_and_classes(tmp_path):
    root = tmp_path / "k400"
    touch(root / "train" / "abseiling" / "aaa_000010_000020.mp4")       # root/<split>/<label>/
    touch(root / "air drumming" / "bbb_000000_000010.mp4")              # root/<label>/
    touch(root / "ccc_000005_000015.mp4")                               # flat
    touch(root / "val" / "abseiling" / "ddd_000001_000011.mp4")
    csv_path = tmp_path / "kinetics_400.csv"
    write_crlf(csv_path, [
        K400_HEADER,
        "abseiling,aaa,10,20,train",
        '"air drumming",bbb,0,10,train',
        "zumba,ccc,5,15,train",
        "abseiling,ddd,1,11,val",
    ])
    train = kinetics400(root, csv_path, subset="train")
    assert train.classes == ["abseiling", "air drumming", "zumba"]
    assert train.labels().tolist() == [0, 1, 2]
    assert train.records[2].path.endswith("ccc_000005_000015.mp4")
    val = kinetics400(root, csv_path, subset="validate")
    assert len(val) == 1 and val.classes == train.classes
    assert len(kinetics400(root, csv_path)) == 4


def test_kinetics400_missing_and_bad_rows(tmp_path):
    root = tmp_path / "k400"
    touch(root / "abseiling" / "aaa_000010_000020.mp4")
    csv_path = tmp_path / "train.csv"
    lines = [K400_HEADER, "abseiling,aaa,10,20,train"] + [f"abseiling,m{i},0,10,train" for i in range(7)]
    write_crlf(csv_path, lines)
    with pytest.warns(UserWarning) as record:
        cat = kinetics400(root, csv_path, subset="train")
    assert len(record) == 1
    message = str(record[0].message)
    assert "7 of 8" in message and "m4_000000_000010" in message and "and 2 more" in message
    assert "m5_" not in message  # only the first five are named
    assert len(cat) == 1
    write_crlf(csv_path, [K400_HEADER, "abseiling,aaa,10,20,train", "abseiling,aaa,ten,20,train"])
    with pytest.raises(ValueError, match=r"train.csv, line 3"):
        kinetics400(root, csv_path)
    write_crlf(csv_path, ["youtube_id,time_start", "aaa,10"])
    with pytest.raises(ValueError, match="label"):
        kinetics400(root, csv_path)


# ---- folder, CSV, dispatch ----------------------------------------------------------------


def test_folder_catalog(tmp_path):
    touch(tmp_path / "walk" / "a.mp4")
    touch(tmp_path / "walk" / "sub" / "b.AVI")
    touch(tmp_path / "run" / "c.mkv")
    touch(tmp_path / "run" / "notes.txt")
    cat = folder(tmp_path)
    assert cat.classes == ["run", "walk"]
    assert [(r.path.rsplit("/", 1)[1], r.label) for r in cat.records] == [("c.mkv", 0), ("a.mp4", 1), ("b.AVI", 1)]
    touch(tmp_path / "empty" / "cls" / "readme.txt")
    with pytest.raises(FileNotFoundError, match="no videos"):
        folder(tmp_path / "empty")


def test_csv_catalog_with_int_and_name_labels(tmp_path):
    touch(tmp_path / "v" / "a.mp4")
    touch(tmp_path / "v" / "b.mp4")
    write_crlf(tmp_path / "ints.csv", ["path,label", "v/a.mp4,2", "v/b.mp4,0"])
    cat = csv_catalog(tmp_path / "ints.csv")
    assert cat.labels().tolist() == [2, 0] and cat.classes == ["0", "1", "2"]
    (tmp_path / "names.csv").write_text(f"path,label\n{tmp_path / 'v' / 'a.mp4'},walk\nv/b.mp4,run\nv/gone.mp4,run\n")
    with pytest.warns(UserWarning, match="1 of 3"):
        cat = csv_catalog(tmp_path / "names.csv")
    assert cat.classes == ["run", "walk"] and cat.labels().tolist() == [1, 0]
    (tmp_path / "bad.csv").write_text("path,label\nv/a.mp4,1\nv/b.mp4\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 3"):
        csv_catalog(tmp_path / "bad.csv")
    (tmp_path / "header.csv").write_text("file,class\nv/a.mp4,1\n")
    with pytest.raises(ValueError, match="path, label"):
        csv_catalog(tmp_path / "header.csv")


def test_load_catalog_dispatch(tmp_path):
    touch(tmp_path / "walk" / "a.mp4")
    cat = load_catalog("folder", root=tmp_path)
    assert cat.records == [VideoRecord(str((tmp_path / "walk" / "a.mp4").resolve()), 0)]
    with pytest.raises(ValueError, match="unknown catalog kind 'ucf'"):
        load_catalog("ucf", root=tmp_path)
    with pytest.raises(TypeError, match="catalog 'folder'"):
        load_catalog("folder", root=tmp_path, split=2)


# ---- held-out test lists for folder and CSV datasets ----------------------------------------


def test_folder_and_csv_read_a_test_list_with_the_training_classes(tmp_path):
    touch(tmp_path / "train" / "run" / "a.mp4")
    touch(tmp_path / "train" / "walk" / "b.mp4")
    touch(tmp_path / "test" / "walk" / "c.mp4")  # only one class: ids must still be the training ones
    train = folder(tmp_path / "train")
    test = folder(tmp_path / "test", classes=train.classes)
    assert test.classes == ["run", "walk"] and test.labels().tolist() == [1]
    touch(tmp_path / "test" / "jump" / "d.mp4")
    with pytest.raises(ValueError, match="jump"):
        folder(tmp_path / "test", classes=train.classes)

    (tmp_path / "train.csv").write_text("path,label,actor\ntrain/run/a.mp4,run,ann\ntrain/walk/b.mp4,walk,bob\n")
    (tmp_path / "test.csv").write_text("path,label,actor\ntest/walk/c.mp4,walk,cid\n")
    train = csv_catalog(tmp_path / "train.csv", group_column="actor")
    assert train.groups == ["ann", "bob"]
    test = csv_catalog(tmp_path / "test.csv", tmp_path, classes=train.classes, group_column="actor")
    assert test.labels().tolist() == [1] and test.classes == train.classes
    (tmp_path / "odd.csv").write_text("path,label\ntest/walk/c.mp4,swim\n")
    with pytest.raises(ValueError, match=r"odd.csv, line 2.*swim"):
        csv_catalog(tmp_path / "odd.csv", tmp_path, classes=train.classes)
    with pytest.raises(ValueError, match="missing actor"):
        csv_catalog(tmp_path / "odd.csv", tmp_path, group_column="actor")


def test_holdout_split_is_stratified_seeded_and_keeps_groups_together(tmp_path):
    from vidssl.data.catalogs import holdout_split, video_group

    assert video_group("Walk/v_Walk_g08_c03.avi") == "g08" and video_group("walk/clip3.mp4") == "walk/clip3.mp4"
    # UCF101-style names: 10 groups of 2 clips in each of 2 classes, plus loose clips in a third.
    for cls in ("Run", "Walk"):
        for g in range(1, 11):
            for c in (1, 2):
                touch(tmp_path / cls / f"v_{cls}_g{g:02d}_c{c:02d}.avi")
    for i in range(10):
        touch(tmp_path / "Swim" / f"swim{i}.mp4")
    cat = folder(tmp_path)
    train, test = holdout_split(cat, 0.3, seed=0)
    assert len(train) + len(test) == len(cat) and not {r.path for r in train.records} & {r.path for r in test.records}
    held = {name: int((test.labels() == i).sum()) for i, name in enumerate(cat.classes)}
    assert held == {"Run": 6, "Swim": 3, "Walk": 6}  # 30% of every class
    group_sides = {}
    for side, part in (("train", train), ("test", test)):
        for record in part.records:
            group_sides.setdefault(video_group(record.path), set()).add(side)
    assert all(len(sides) == 1 for sides in group_sides.values())  # no group on both sides
    # UCF101's group number is one group across classes, as in its official splits.
    assert all(len(group_sides[f"g{g:02d}"]) == 1 for g in range(1, 11))
    # Deterministic whatever the record order; another seed gives another split.
    shuffled = Catalog(cat.records[::-1], cat.classes, cat.name, cat.groups[::-1])
    assert {r.path for r in holdout_split(shuffled, 0.3, seed=0)[1].records} == {r.path for r in test.records}
    assert {r.path for r in holdout_split(cat, 0.3, seed=1)[1].records} != {r.path for r in test.records}
    with pytest.raises(ValueError, match="between 0 and 1"):
        holdout_split(cat, 1.0)
