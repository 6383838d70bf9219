"""The task-data loader: formats, routing, bad rows that do not cost good ones, manifests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskloop.data import loader
from taskloop.data.errors import ManifestError
from taskloop.data.loader import LoadResult, _jsonl_rows, load_tasks, task_from_name
from taskloop.data.records import (
    CodegenExample,
    QAExample,
    RowError,
    SummarizeExample,
    TranslateExample,
)


def write(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``files`` (archive path → content) under ``root``; return ``root``."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def by_task(result: LoadResult) -> dict[tuple[str, str], list[str]]:
    """(file, task) → example ids, in row order."""
    return {(g.file, g.task): [ex.id for ex in g.examples] for g in result.groups}


def errors(result: LoadResult) -> list[str]:
    return [str(e) for e in result.errors]


QA = {"question": "Which river?", "context": "Vienna lies on the Danube."}


# --- formats -------------------------------------------------------------------------------


def test_jsonl_with_mixed_tasks(tmp_path: Path) -> None:
    """Rows of different tasks share a file; each goes to its task's group; the row is
    the line number (the blank line 3 is skipped but still counted)."""
    text = (
        jsonl({"id": "q1", "task": "qa", **QA}, {"id": "s1", "task": "summarize", "text": "Doc."})
        + "\n"
        + jsonl({"id": "q2", "task": "question-answering", **QA})
    )
    result = load_tasks(write(tmp_path, {"mixed.jsonl": text}))
    assert result.errors == []
    assert by_task(result) == {
        ("mixed.jsonl", "qa"): ["q1", "q2"],
        ("mixed.jsonl", "summarize"): ["s1"],
    }
    q2 = result.groups[0].examples[1]
    assert isinstance(q2, QAExample) and str(q2.where) == "mixed.jsonl:4"
    assert result.rows["mixed.jsonl"] == 3
    assert result.examples == 3


@pytest.mark.parametrize(
    "content",
    [
        [{"id": "a", **QA}, {"id": "b", **QA}],
        {"rows": [{"id": "a", **QA}, {"id": "b", **QA}]},
        {"examples": [{"id": "a", **QA}, {"id": "b", **QA}]},
    ],
    ids=["list", "object-with-rows", "object-with-examples"],
)
def test_json_shapes(tmp_path: Path, content: object) -> None:
    """A list, or an object holding one; the task comes from the name (``qa_dev``)."""
    result = load_tasks(write(tmp_path, {"qa_dev.json": json.dumps(content)}))
    assert result.errors == []
    assert by_task(result) == {("qa_dev.json", "qa"): ["a", "b"]}
    assert [ex.where.row for ex in result.groups[0].examples] == [1, 2]


def test_json_single_object_is_one_row(tmp_path: Path) -> None:
    result = load_tasks(write(tmp_path, {"question.json": json.dumps({"id": "only", **QA})}))
    assert by_task(result) == {("question.json", "qa"): ["only"]}


def test_json_lines_named_json(tmp_path: Path) -> None:
    """JSON Lines under a .json name (as xsum's sample ships) is read line by line."""
    text = jsonl({"document": "One.", "summary": "1"}, {"document": "Two.", "summary": "2"})
    result = load_tasks(write(tmp_path, {"xsum_sample.json": text}))
    assert result.errors == []
    assert [ex.where.row for ex in result.groups[0].examples] == [1, 2]


def test_csv_rows_numbered_by_line(tmp_path: Path) -> None:
    """Line 1 is the header. Row "b" starts on line 3 and its quoted context spans two
    lines, line 5 is blank, so "c" is on line 6. List fields may hold a JSON list."""
    text = (
        "id,question,context,answers,is_impossible\n"
        'a,Which river?,Vienna lies on the Danube.,"[""the Danube"", ""Danube""]",false\n'
        'b,Who?,"First line.\nSecond line.",,true\n'
        "\n"
        "c,What?,Some context.,Plain answer,0\n"
    )
    result = load_tasks(write(tmp_path, {"squad_like_qa.csv": text}))
    assert result.errors == []
    a, b, c = result.groups[0].examples
    assert isinstance(a, QAExample) and isinstance(b, QAExample) and isinstance(c, QAExample)
    assert [a.where.row, b.where.row, c.where.row] == [2, 3, 6]
    assert a.answers == ["the Danube", "Danube"] and a.is_impossible is False
    assert b.answers == [] and b.is_impossible is True and b.context == "First line.\nSecond line."
    assert c.answers == ["Plain answer"] and c.is_impossible is False


def test_squad_nested(tmp_path: Path) -> None:
    """Two articles, three paragraphs' questions → one QA row per question, numbered
    1..4 in document order; answers are the answer texts; is_impossible carried."""
    squad = {
        "version": "v2.0",
        "data": [
            {
                "title": "Danube",
                "paragraphs": [
                    {
                        "context": "Vienna lies on the Danube.",
                        "qas": [
                            {
                                "id": "s1",
                                "question": "Which river?",
                                "answers": [{"text": "Danube", "answer_start": 19}],
                            },
                            {
                                "id": "s2",
                                "question": "Which sea?",
                                "answers": [],
                                "is_impossible": True,
                            },
                        ],
                    }
                ],
            },
            {
                "title": "Rome",
                "paragraphs": [
                    {
                        "context": "Rome is old.",
                        "qas": [
                            {"id": "s3", "question": "Is it old?", "answers": [{"text": "old"}]}
                        ],
                    },
                    {
                        "context": "It has seven hills.",
                        "qas": [
                            {
                                "id": "s4",
                                "question": "Hills?",
                                "answers": [{"text": "seven"}, {"text": "seven hills"}],
                            }
                        ],
                    },
                ],
            },
        ],
    }
    result = load_tasks(write(tmp_path, {"dev.json": json.dumps(squad)}))
    assert result.errors == []
    examples = result.groups[0].examples
    assert [(ex.id, ex.where.row) for ex in examples] == [
        ("s1", 1),
        ("s2", 2),
        ("s3", 3),
        ("s4", 4),
    ]
    s1, s2, _, s4 = examples
    assert isinstance(s1, QAExample) and isinstance(s2, QAExample) and isinstance(s4, QAExample)
    assert s1.answers == ["Danube"] and s1.context == "Vienna lies on the Danube."
    assert s2.answers == [] and s2.is_impossible is True
    assert s4.answers == ["seven", "seven hills"] and s4.context == "It has seven hills."


def test_real_squad_v2_sample(shared_data: Path, tmp_path: Path) -> None:
    """haystack's SQuAD v2 sample: 626 questions, 333 of them unanswerable (README)."""
    source = shared_data / "qa" / "squad_v2_small.json"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    shutil.copy(source, tmp_path / "squad_v2_small.json")
    result = load_tasks(tmp_path)
    assert errors(result) == []
    examples = [ex for g in result.groups for ex in g.examples]
    assert len(examples) == 626
    assert sum(1 for ex in examples if isinstance(ex, QAExample) and ex.is_impossible) == 333


def test_real_xsum_sample(shared_data: Path, tmp_path: Path) -> None:
    """transformers' xsum fixture: 10 JSON Lines rows in a .json file, task from the name."""
    source = shared_data / "summarization" / "xsum_sample.json"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    shutil.copy(source, tmp_path / "xsum_sample.json")
    result = load_tasks(tmp_path)
    assert errors(result) == []
    (group,) = result.groups
    assert group.task == "summarize" and len(group.examples) == 10
    assert all(isinstance(ex, SummarizeExample) and len(ex.summaries) == 1 for ex in group.examples)


# --- routing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "task"),
    [
        ("data/squad_dev.json", "qa"),
        ("data/qa.jsonl", "qa"),
        ("my-qa-set.csv", "qa"),
        ("quality.jsonl", None),  # "qa" inside a word is not a hint
        ("humaneval.jsonl", "codegen"),
        ("dialogsum_test.jsonl", "summarize"),
        ("summaries.csv", "summarize"),
        ("multi30k_val.jsonl", "translate"),
        ("data/rows.jsonl", None),
    ],
)
def test_task_from_name(path: str, task: str | None) -> None:
    assert task_from_name(path) == task


def test_task_by_manifest_beats_the_name_and_the_row_beats_both(tmp_path: Path) -> None:
    """qa.jsonl says qa by name, the manifest says summarize, the row says translate."""
    rows = jsonl(
        {"id": "m", "text": "A document."},  # manifest: summarize
        {"id": "r", "task": "translation", "source": "Hello"},  # the row's own task
    )
    manifest = {"files": {"qa.jsonl": {"task": "summarize"}}}
    result = load_tasks(write(tmp_path, {"qa.jsonl": rows, "manifest.json": json.dumps(manifest)}))
    assert by_task(result) == {("qa.jsonl", "summarize"): ["m"], ("qa.jsonl", "translate"): ["r"]}


def test_only_requested_tasks(tmp_path: Path) -> None:
    rows = jsonl({"id": "q", "task": "qa", **QA}, {"id": "s", "task": "summarize", "text": "D."})
    result = load_tasks(write(tmp_path, {"rows.jsonl": rows}), tasks={"summarize"})
    assert by_task(result) == {("rows.jsonl", "summarize"): ["s"]}
    assert result.errors == []


def test_public_field_spellings(tmp_path: Path) -> None:
    """HF squad answers dict, HumanEval task_id, numeric ids, translate src/tgt,
    summary + summary1..n + highlights all collected as references."""
    rows = jsonl(
        {"task": "qa", "qid": 17, **QA, "answers": {"text": ["Danube"], "answer_start": [19]}},
        {"task": "codegen", "task_id": "HumanEval/0", "prompt": "def f():\n"},
        {"task": "translate", "id": 3, "src": "Hello", "tgt": "Hallo"},
        {"task": "summarize", "id": "d", "dialogue": "#P1#: hi", "summary1": "a", "summary2": "b"},
        {"task": "summarize", "id": "n", "document": "News.", "highlights": "h", "summary": "s"},
    )
    result = load_tasks(write(tmp_path, {"rows.jsonl": rows}))
    assert result.errors == []
    ex = {e.id: e for g in result.groups for e in g.examples}
    assert isinstance(ex["17"], QAExample) and ex["17"].answers == ["Danube"]
    assert isinstance(ex["HumanEval/0"], CodegenExample)
    tr = ex["3"]
    assert isinstance(tr, TranslateExample) and (tr.source, tr.target) == ("Hello", "Hallo")
    d, n = ex["d"], ex["n"]
    assert isinstance(d, SummarizeExample) and d.summaries == ["a", "b"]
    assert isinstance(n, SummarizeExample) and sorted(n.summaries) == ["h", "s"]


def test_row_without_id_gets_file_and_row(tmp_path: Path) -> None:
    result = load_tasks(write(tmp_path, {"d/qa.jsonl": "\n" + jsonl(QA)}))
    assert by_task(result) == {("d/qa.jsonl", "qa"): ["d/qa.jsonl#2"]}


def test_hidden_and_macos_folders_are_skipped(tmp_path: Path) -> None:
    files = {
        "qa.jsonl": jsonl({"id": "keep", **QA}),
        ".git/qa.jsonl": jsonl({"id": "hidden", **QA}),
        "__MACOSX/qa.jsonl": jsonl({"id": "resource-fork", **QA}),
        "notes.txt": "not a task file",
    }
    result = load_tasks(write(tmp_path, files))
    assert by_task(result) == {("qa.jsonl", "qa"): ["keep"]}


def test_no_task_files_is_a_warning(tmp_path: Path) -> None:
    result = load_tasks(write(tmp_path, {"readme.txt": "hello"}))
    assert result.groups == [] and result.errors == []
    assert result.warnings and "no task files" in result.warnings[0]


# --- bad rows: reported, and the good rows still load ----------------------------------------


def test_bad_rows_are_reported_and_good_rows_load(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "good1", "task": "qa", **QA}),  # 1
        '{"id": "broken", "task": "qa",',  # 2 invalid JSON
        json.dumps({"id": "noq", "task": "qa", "context": "c"}),  # 3 missing question
        json.dumps({"id": "poem", "task": "poem", "text": "roses"}),  # 4 unknown task
        json.dumps(["a", "list"]),  # 5 not an object
        json.dumps({"id": "notask", "question": "q"}),  # 6 no task, name implies none
        json.dumps({"id": "good2", "task": "summarize", "text": "Doc."}),  # 7
        json.dumps({"id": "empty", "task": "translate", "source": ""}),  # 8 empty source
    ]
    result = load_tasks(write(tmp_path, {"rows.jsonl": "\n".join(lines) + "\n"}))
    assert by_task(result) == {
        ("rows.jsonl", "qa"): ["good1"],
        ("rows.jsonl", "summarize"): ["good2"],
    }
    by_row = {e.row or 0: e for e in result.errors}
    assert sorted(by_row) == [2, 3, 4, 5, 6, 8]
    assert by_row[2].code == "data.json" and "invalid JSON at column" in by_row[2].message
    assert str(by_row[3]) == "rows.jsonl:3: question: required field missing for a qa row"
    assert by_row[4].code == "data.unknown_task" and "'poem'" in by_row[4].message
    assert by_row[5].message == "a row must be a JSON object"
    assert by_row[6].code == "data.no_task" and "manifest.json" in by_row[6].message
    assert by_row[8].field == "source"
    assert result.rows["rows.jsonl"] == 6  # lines that parsed into objects


def test_csv_row_with_extra_values(tmp_path: Path) -> None:
    """Regression: a row with more values than the header has columns used to crash the
    whole load (a None key in the row); now it is one bad row."""
    text = "id,question,context\na,Q?,C.\nb,Q?,C, with an unquoted comma\nc,Q?,C.\n"
    result = load_tasks(write(tmp_path, {"qa.csv": text}))
    assert by_task(result) == {("qa.csv", "qa"): ["a", "c"]}
    (error,) = result.errors
    assert (error.row, error.code) == (3, "data.csv")
    assert "4 values but the header names 3 columns" in error.message


def test_csv_field_over_the_size_limit(tmp_path: Path) -> None:
    """csv's field limit (128 Ki chars) stops the file there; rows before it are kept."""
    huge = "x" * (131_072 + 1)
    text = f'id,question,context\na,Q?,C.\nb,Q?,"{huge}"\n'
    result = load_tasks(write(tmp_path, {"qa.csv": text}))
    assert by_task(result) == {("qa.csv", "qa"): ["a"]}
    (error,) = result.errors
    assert error.code == "data.csv" and "field larger than field limit" in error.message


def test_non_utf8_json_file_names_the_byte_offset(tmp_path: Path) -> None:
    """b'\\xef\\xbb\\xbf' BOM (3) + '[\\n' (2) + '{"id": "' (8): the bad byte is at 13, line 2;
    the other file still loads."""
    bad = b'\xef\xbb\xbf[\n{"id": "\xff", "question": "q", "context": "c"}]'
    files: dict[str, str | bytes] = {
        "a_qa.json": bad,
        "b_qa.json": json.dumps([{"id": "ok", **QA}]),
    }
    result = load_tasks(write(tmp_path, files))
    assert by_task(result) == {("b_qa.json", "qa"): ["ok"]}
    (error,) = result.errors
    assert error.code == "data.encoding" and error.file == "a_qa.json"
    assert error.message == "not UTF-8 (byte offset 13, line 2)"


def test_non_utf8_jsonl_line_costs_only_that_line(tmp_path: Path) -> None:
    """Line 1 is 58 bytes + LF, so line 2 starts at byte 59; '{"id": "' is 8 more: 67.
    Lines 1 and 3 load, with their own line numbers."""
    line1 = json.dumps({"id": "a", "task": "qa", "question": "q", "context": "c"})
    assert len(line1) == 58
    raw = (
        line1.encode()
        + b'\n{"id": "\xe9", "task": "qa", "question": "q", "context": "c"}\n'
        + json.dumps({"id": "c", "task": "qa", "question": "q", "context": "c"}).encode()
        + b"\n"
    )
    result = load_tasks(write(tmp_path, {"rows.jsonl": raw}))
    assert by_task(result) == {("rows.jsonl", "qa"): ["a", "c"]}
    (error,) = result.errors
    assert (error.row, error.code) == (2, "data.encoding")
    assert error.message == "not UTF-8 (byte offset 67)"
    assert [ex.where.row for ex in result.groups[0].examples] == [1, 3]


def test_bom_is_accepted(tmp_path: Path) -> None:
    result = load_tasks(
        write(tmp_path, {"qa.jsonl": b"\xef\xbb\xbf" + jsonl({"id": "x", **QA}).encode()})
    )
    assert result.errors == [] and by_task(result) == {("qa.jsonl", "qa"): ["x"]}


def test_line_separator_inside_a_string_is_not_a_new_row(tmp_path: Path) -> None:
    """Regression: json.dumps(ensure_ascii=False) leaves U+2028 and U+0085 raw inside
    strings; str.splitlines() split the row there and lost it."""
    row = {"id": "x", "task": "qa", "question": "Which\u2028river?", "context": "Vienna\x85Danube"}
    result = load_tasks(
        write(tmp_path, {"rows.jsonl": jsonl(row, {"id": "y", **QA, "task": "qa"})})
    )
    assert result.errors == []
    x, y = result.groups[0].examples
    assert isinstance(x, QAExample) and x.question == "Which\u2028river?"
    assert y.where.row == 2


def test_invalid_json_file_names_line_and_column(tmp_path: Path) -> None:
    result = load_tasks(write(tmp_path, {"qa.json": '[\n  {"id": 1,\n  oops}\n]'}))
    (error,) = result.errors
    assert (error.row, error.code) == (3, "data.json")
    assert error.message.startswith("invalid JSON at line 3 column 3")


def test_oversized_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", 10)
    result = load_tasks(write(tmp_path, {"qa.jsonl": jsonl({"id": "x", **QA})}))
    assert [e.message for e in result.errors] == ["file over 512 MiB"]


@given(st.lists(st.text(alphabet=st.characters(exclude_characters="\n")), max_size=8))
def test_jsonl_reader_never_raises(lines: list[str]) -> None:
    """Any text lines: each non-blank line gives a row (an object) or one RowError that
    points at that line; nothing raises."""
    found: list[RowError] = []
    rows = _jsonl_rows("\n".join(lines), "x.jsonl", found)
    non_blank = {i for i, line in enumerate(lines, 1) if line.strip()}
    assert all(isinstance(obj, dict) for _, obj in rows)
    assert {n for n, _ in rows} | {e.row for e in found} == non_blank
    assert len(rows) + len(found) == len(non_blank)


@given(
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"task": st.sampled_from(["qa", "poem", "", "QA"])}),
            st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
            st.integers(),
        ),
        max_size=6,
    )
)
def test_any_json_rows_load_without_raising(
    tmp_path_factory: pytest.TempPathFactory, rows: list[object]
) -> None:
    """Arbitrary JSON values as rows: every row is an example or an error, never a crash."""
    root = tmp_path_factory.mktemp("any")
    result = load_tasks(write(root, {"rows.jsonl": "".join(json.dumps(r) + "\n" for r in rows)}))
    assert result.examples + len(result.errors) == len(rows)


# --- manifest ------------------------------------------------------------------------------


def test_manifest_options_and_defaults(tmp_path: Path) -> None:
    """defaults apply to every listed file; a file's own options win; unlisted files are
    not read."""
    manifest = {
        "defaults": {"max_new_tokens": 96, "batch_size": 4},
        "files": {"a.jsonl": {"task": "qa", "batch_size": 16}, "b.jsonl": {"task": "qa"}},
    }
    files = {
        "manifest.json": json.dumps(manifest),
        "a.jsonl": jsonl({"id": "a", **QA}),
        "b.jsonl": jsonl({"id": "b", **QA}),
        "c_qa.jsonl": jsonl({"id": "c", **QA}),
    }
    result = load_tasks(write(tmp_path, files))
    opts = {g.file: g.options for g in result.groups}
    assert set(opts) == {"a.jsonl", "b.jsonl"}
    assert (opts["a.jsonl"].max_new_tokens, opts["a.jsonl"].batch_size) == (96, 16)
    assert (opts["b.jsonl"].max_new_tokens, opts["b.jsonl"].batch_size) == (96, 4)
    assert result.manifest["defaults"] == manifest["defaults"]


def test_manifest_defaults_without_files_apply_to_discovered_files(tmp_path: Path) -> None:
    files = {"manifest.json": json.dumps({"defaults": {"num_beams": 3}}), "qa.jsonl": jsonl(QA)}
    result = load_tasks(write(tmp_path, files))
    assert result.groups[0].options.num_beams == 3


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("{not json", "manifest.json: not valid JSON"),
        ("[]", "manifest.json: must be a JSON object, not list"),
        ('{"files": ["qa.jsonl"]}', "'files' must map file paths to option objects"),
        ('{"files": {"qa.jsonl": "qa"}}', "files.qa.jsonl: options must be an object"),
        ('{"files": {"qa.jsonl": {"modle": "x"}}}', "files.qa.jsonl.modle: Extra inputs"),
        ('{"files": {"qa.jsonl": {"num_beams": 0}}}', "files.qa.jsonl.num_beams: Input should"),
        ('{"files": {"qa.jsonl": {"task": "poem"}}}', "files.qa.jsonl.task: Input should be"),
        ('{"defaults": {"modle": "x"}, "files": {"qa.jsonl": {}}}', "defaults.modle: Extra inputs"),
        ('{"defaults": [1], "files": {"qa.jsonl": {}}}', "'defaults' must be an object"),
    ],
)
def test_manifest_errors(tmp_path: Path, manifest: str, message: str) -> None:
    write(tmp_path, {"manifest.json": manifest, "qa.jsonl": jsonl(QA)})
    with pytest.raises(ManifestError) as err:
        load_tasks(tmp_path)
    assert message in str(err.value)
    assert err.value.code == "data.manifest"


def test_unknown_option_hint_points_at_the_docs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"manifest.json": '{"files": {"qa.jsonl": {"modle": "x"}}}', "qa.jsonl": jsonl(QA)},
    )
    with pytest.raises(ManifestError) as err:
        load_tasks(tmp_path)
    assert str(err.value) == "manifest.json: files.qa.jsonl.modle: Extra inputs are not permitted"
    assert err.value.hint and "task-format.md" in err.value.hint


# --- ids and fields ------------------------------------------------------------------------


def test_duplicate_ids_are_renamed_with_a_warning(tmp_path: Path) -> None:
    """Within a task, a repeated id gets a #ROW suffix; the same id in another task is
    fine. b.jsonl's second "x" is row 2 like a.jsonl's, so "x#2" is taken: it becomes
    "x#b_qa.jsonl:2". A row whose own id is "x#2" later is renamed as well."""
    files = {
        "a_qa.jsonl": jsonl({"id": "x", **QA}, {"id": "x", **QA}),
        "b_qa.jsonl": jsonl({"id": "y", **QA}, {"id": "x", **QA}, {"id": "x#2", **QA}),
        "c_summary.jsonl": jsonl({"id": "x", "text": "Doc."}),
    }
    result = load_tasks(write(tmp_path, files))
    assert by_task(result) == {
        ("a_qa.jsonl", "qa"): ["x", "x#2"],
        ("b_qa.jsonl", "qa"): ["y", "x#b_qa.jsonl:2", "x#2#3"],
        ("c_summary.jsonl", "summarize"): ["x"],
    }
    assert result.warnings[0] == "a_qa.jsonl:2: id 'x' already used at a_qa.jsonl:1; renamed 'x#2'"
    assert len(result.warnings) == 3
    ids = [ex.id for g in result.groups if g.task == "qa" for ex in g.examples]
    assert len(ids) == len(set(ids))


def test_unknown_fields_are_warned_once_per_file(tmp_path: Path) -> None:
    rows = jsonl({"id": "a", **QA, "colour": 1}, {"id": "b", **QA, "colour": 2, "mood": 3})
    result = load_tasks(write(tmp_path, {"qa.jsonl": rows}))
    assert result.warnings == ["qa.jsonl: fields ignored: colour, mood"]


# --- the bundled sample archive ------------------------------------------------------------


def test_bundled_sample_archive_loads_cleanly() -> None:
    """src/taskloop/samples/tasks: 4 QA, 2 summarize, 4 translate, 3 codegen rows."""
    root = Path(str(resources.files("taskloop.samples") / "tasks"))
    result = load_tasks(root)
    assert result.errors == []
    assert result.warnings == []
    counts = {g.task: len(g.examples) for g in result.groups}
    assert counts == {"qa": 4, "summarize": 2, "translate": 4, "codegen": 3}
    translate = next(g for g in result.groups if g.task == "translate")
    assert translate.options.glossary == "data/glossary.tsv"
    assert (translate.options.source_lang, translate.options.target_lang) == ("en", "de")


def test_gzipped_task_files_are_read(tmp_path):
    """``qa.jsonl.gz`` is read like ``qa.jsonl`` (public data sets ship gzipped); a
    corrupt .gz is one error for that file, and the other files still load."""
    import gzip

    row = {"question": "Which river?", "context": "Vienna lies on the Danube."}
    (tmp_path / "qa.jsonl.gz").write_bytes(gzip.compress((json.dumps(row) + "\n").encode()))
    (tmp_path / "broken_qa.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    result = load_tasks(tmp_path)
    (group,) = result.groups
    assert group.file == "qa.jsonl.gz" and group.task == "qa" and len(group.examples) == 1
    (error,) = result.errors
    assert error.file == "broken_qa.jsonl.gz" and "gzip" in error.message


def test_a_listed_file_missing_from_the_archive_costs_only_that_file(tmp_path: Path) -> None:
    """A file lost in a blob repair (or never added) is one error; the others still run."""
    manifest = '{"files": {"gone.jsonl": {"task": "qa"}, "qa.jsonl": {"task": "qa"}}}'
    write(tmp_path, {"manifest.json": manifest, "qa.jsonl": jsonl(QA)})
    result = load_tasks(tmp_path)
    assert [g.file for g in result.groups] == ["qa.jsonl"]
    (error,) = result.errors
    assert (error.file, error.row, error.code) == ("gone.jsonl", None, "data.missing_file")
    assert "not in the archive" in error.message
