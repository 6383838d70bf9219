"""Training inputs: JSONL files, folders, zips, blobs and saved HF datasets, as typed examples."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from taskloop.blob import encode_zip_to_utf8_blob
from taskloop.data.records import QAExample, TranslateExample
from taskloop.train.errors import TrainDataError
from taskloop.train.inputs import read_inputs

TRANSLATE = [
    {"id": "t1", "task": "translate", "source": "red cat", "target": "rote Katze"},
    {"id": "t2", "task": "translate", "source": "blue dog", "target": "blauer Hund"},
]
QA = [  # every row has every key: Dataset.from_list takes its columns from the first row
    {"id": "q1", "question": "where is the cat", "context": "the cat is home",
     "answers": ["home"], "is_impossible": False},
    {"id": "q2", "question": "who", "context": "nobody", "answers": [], "is_impossible": True},
    {"id": "q3", "question": "what", "context": "a rock", "answers": ["rock"],
     "is_impossible": False},
]  # fmt: skip


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def archive(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def ids(examples: list[Any]) -> list[str]:
    return [e.id for e in examples]


def test_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(jsonl(TRANSLATE))
    got = read_inputs([str(path)])
    assert ids(got.examples) == ["t1", "t2"]
    assert all(isinstance(e, TranslateExample) for e in got.examples)
    assert got.examples[0].where.file == "mixed.jsonl"
    assert got.examples[1].where.row == 2
    assert got.errors == []
    assert got.sources == {str(path): 2}


def test_folder_with_a_manifest_less_task_file(tmp_path: Path) -> None:
    """No task field in the rows: the file name (squad_train.jsonl) says qa."""
    (tmp_path / "folder" / "data").mkdir(parents=True)
    (tmp_path / "folder" / "data" / "squad_train.jsonl").write_text(jsonl(QA))
    got = read_inputs([str(tmp_path / "folder")])
    assert ids(got.examples) == ["q1", "q2", "q3"]
    assert all(isinstance(e, QAExample) for e in got.examples)
    assert got.examples[0].where.file == "data/squad_train.jsonl"


def test_zip_archive_and_blob(tmp_path: Path) -> None:
    data = archive({"data/translate.jsonl": jsonl(TRANSLATE), "data/qa.jsonl": jsonl(QA)})
    (tmp_path / "tasks.zip").write_bytes(data)
    (tmp_path / "tasks.blob").write_text(encode_zip_to_utf8_blob(data))
    for name in ("tasks.zip", "tasks.blob"):
        got = read_inputs([str(tmp_path / name)])
        assert sorted(ids(got.examples)) == ["q1", "q2", "q3", "t1", "t2"], name
        assert got.errors == []
        assert got.warnings == []
        assert got.sources == {str(tmp_path / name): 5}


def test_hf_dataset_saved_to_disk(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(QA).save_to_disk(str(tmp_path / "squad_train"))
    got = read_inputs([str(tmp_path / "squad_train")])  # the folder name says qa
    assert ids(got.examples) == ["q1", "q2", "q3"]
    assert got.examples[1].is_impossible is True  # type: ignore[union-attr]
    assert got.examples[0].where.file == "squad_train"
    assert got.examples[2].where.row == 3

    datasets.Dataset.from_list(TRANSLATE).save_to_disk(str(tmp_path / "rows"))
    got = read_inputs([str(tmp_path / "rows")])  # the task column says translate
    assert ids(got.examples) == ["t1", "t2"]


def test_hf_dataset_dict_with_splits_and_squad_answers(tmp_path: Path) -> None:
    import datasets

    squad = [
        {"id": "s1", "question": "who", "context": "Ann ran", "answers": {"text": ["Ann"],
         "answer_start": [0]}},
    ]  # fmt: skip
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_list(squad),
        "validation": datasets.Dataset.from_list(squad),
    })  # fmt: skip
    dd.save_to_disk(str(tmp_path / "my_squad"))
    got = read_inputs([str(tmp_path / "my_squad")])
    assert [e.where.file for e in got.examples] == ["my_squad/train", "my_squad/validation"]
    assert got.examples[0].answers == ["Ann"]  # type: ignore[union-attr]


def test_hf_dataset_rows_name_their_task_like_files_do(tmp_path: Path) -> None:
    """``translation`` is an alias of translate, as in files; an unknown task is a bad row."""
    import datasets

    rows = [
        {"id": "a", "task": "translation", "source": "red", "target": "rot"},
        {"id": "b", "task": "poetry", "source": "x", "target": "y"},
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "rows"))
    got = read_inputs([str(tmp_path / "rows")])
    assert ids(got.examples) == ["a"]
    assert [(e.file, e.row, e.field) for e in got.errors] == [("rows", 2, "task")]
    assert "poetry" in got.errors[0].message


def test_hf_dataset_without_a_task_is_reported_per_row(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(TRANSLATE).remove_columns("task").save_to_disk(
        str(tmp_path / "rows")
    )
    got = read_inputs([str(tmp_path / "rows")])
    assert got.examples == []
    assert [(e.row, e.field) for e in got.errors] == [(1, "task"), (2, "task")]
    # One task named in the config names the task of such rows.
    got = read_inputs([str(tmp_path / "rows")], tasks=["translate"])
    assert ids(got.examples) == ["t1", "t2"]


def test_bad_rows_are_counted_with_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "translate.jsonl"
    rows = [TRANSLATE[0], {"id": "bad", "target": "no source"}, TRANSLATE[1]]
    path.write_text(jsonl(rows) + "{broken json\n")
    got = read_inputs([str(path)])
    assert ids(got.examples) == ["t1", "t2"]
    assert sorted((e.file, e.row) for e in got.errors) == [
        ("translate.jsonl", 2),
        ("translate.jsonl", 4),
    ]
    assert next(e for e in got.errors if e.row == 2).field == "source"
    assert got.sources == {str(path): 2}


def test_task_filter_keeps_only_the_named_tasks(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(jsonl(TRANSLATE))
    (tmp_path / "qa.jsonl").write_text(jsonl(QA))
    paths = [str(tmp_path / "t.jsonl"), str(tmp_path / "qa.jsonl")]
    got = read_inputs(paths, tasks=["qa"])
    assert ids(got.examples) == ["q1", "q2", "q3"]
    assert got.sources == {paths[0]: 0, paths[1]: 3}
    assert len(read_inputs(paths).examples) == 5


def test_a_missing_path_fails_with_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(TrainDataError) as info:
        read_inputs([str(tmp_path / "nope.jsonl")])
    assert "nope.jsonl" in str(info.value)
    assert "does not exist" in str(info.value)
    assert "JSONL" in (info.value.hint or "")
    assert info.value.code == "train.data"
