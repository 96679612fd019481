"""The CCF-LLM pipeline in-process: title resolution, fallbacks, the widget's text, ranking (tiny random model)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoProcessor, pipeline

import modeling_ccf
from ccf_llm.testing import make_tiny
from ccf_llm.testing.fresh import BLOCK_REPO_MODULES
from modeling_ccf import CCFLLMForCTR
from pipeline_ccf import INPUT_FORMAT, CCFLLMPipeline, TitleResolver, parse_widget_text
from processing_ccf import CCFLLMProcessor

HISTORY = [1, "Fargo (1996)"]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory, one_thread) -> CCFLLMPipeline:
    folder = make_tiny(tmp_path_factory.mktemp("tiny") / "model")
    model = CCFLLMForCTR.from_pretrained(folder, dtype=torch.float32)
    return CCFLLMPipeline(model=model, processor=CCFLLMProcessor.from_pretrained(folder), device="cpu")


def yes(result: list[dict]) -> float:
    assert [row["label"] for row in result] == ["Yes", "No"]
    assert result[0]["score"] + result[1]["score"] == pytest.approx(1)
    return result[0]["score"]


# --- titles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Heat (1995)", 2),  # exact
        ("heat (1995)", 2),  # case
        ("  HEAT ", 2),  # case, spaces, no year
        ("Heat (2001)", 2),  # wrong year
        ("Matrix, The (1999)", 4),  # trailing article (MovieLens style) vs the catalog's leading one
        ("the matrix", 4),
        ("Matrix", 4),
        ("Heatwave", None),
        ("(1995)", None),
    ],
)
def test_title_resolution_on_tiny_catalog(pipe: CCFLLMPipeline, title: str, expected: int | None) -> None:
    assert pipe.titles.resolve(title) == expected


def test_title_resolution_movielens_style() -> None:
    resolver = TitleResolver(
        {
            10: "Matrix, The (1999)",
            11: "City of Lost Children, The (Cité des enfants perdus, La) (1995)",
            12: "Haine, La (1995)",
            13: "Heat (1995)",
            14: "Heat (1986)",
        }
    )
    assert resolver.resolve("The Matrix (1999)") == 10
    assert resolver.resolve("the city of lost children") == 11
    assert resolver.resolve("La Haine") == 12
    assert resolver.resolve("heat (1986)") == 14  # the year picks between remakes
    with pytest.warns(UserWarning, match="matches catalog items"):
        assert resolver.resolve("Heat") == 13


@pytest.mark.parametrize("title", ["Chasing Amy (1997)", "chasing amy (1997)", "Chasing Amy"])
def test_a_title_that_several_items_share_resolves_to_the_lowest_id(title: str) -> None:
    """Exact or case-folded, as ``resolve`` promises: the lowest id, with a warning."""
    resolver = TitleResolver({246: "Chasing Amy (1997)", 268: "Chasing Amy (1997)"})
    with pytest.warns(UserWarning, match=r"matches catalog items \[246, 268\]; using 246"):
        assert resolver.resolve(title) == 246


# --- unknown users and items ---------------------------------------------------------------------------


def test_unknown_user_scores_as_history_only(pipe: CCFLLMPipeline) -> None:
    with pytest.warns(UserWarning, match="unknown user 999"):
        unknown = yes(pipe({"user_id": 999, "history": HISTORY, "candidate": 2}))
    assert unknown == pytest.approx(yes(pipe({"user_id": 0, "history": HISTORY, "candidate": 2})), abs=1e-6)
    assert unknown != pytest.approx(yes(pipe({"user_id": 3, "history": HISTORY, "candidate": 2})), abs=1e-6)


def test_unknown_title_is_a_text_only_item(pipe: CCFLLMPipeline) -> None:
    with pytest.warns(UserWarning, match="not in the item catalog"):
        yes(pipe({"history": ["An Unheard-of Film (2031)"], "candidate": "Another One"}))
    with pytest.warns(UserWarning, match="not in the item catalog"):
        ranking = pipe({"history": HISTORY, "candidates": ["Another One", "Heat"]})
    assert {(row["item"], row["item_id"]) for row in ranking} == {("Another One", 0), ("Heat (1995)", 2)}


def test_unknown_ids_are_dropped_from_history_or_scored_as_text(pipe: CCFLLMPipeline) -> None:
    with pytest.warns(UserWarning, match="unknown item id 99: left out"):
        with_unknown = yes(pipe({"user_id": 2, "history": [1, 99, 3], "candidate": 2}))
    assert with_unknown == pytest.approx(
        yes(pipe({"user_id": 2, "history": [1, 3], "candidate": 2})), abs=1e-6
    )
    with pytest.warns(UserWarning, match="unknown item id 99: scored as text-only"):
        ranking = pipe({"history": [1], "candidates": [99, 2]})
    assert ("item 99", 0) in {(row["item"], row["item_id"]) for row in ranking}


# --- inputs --------------------------------------------------------------------------------------------


def test_widget_text_parsing() -> None:
    assert parse_widget_text("history: Toy Story (1995); Fargo (1996) | candidate: Heat (1995)") == {
        "history": ["Toy Story (1995)", "Fargo (1996)"],
        "candidate": "Heat (1995)",
    }
    assert parse_widget_text(" USER : 12 |Candidates: A; B ;; C ") == {
        "user_id": 12,
        "candidates": ["A", "B", "C"],
    }
    assert parse_widget_text("candidate: Star Wars: Episode IV - A New Hope (1977)") == {
        "candidate": "Star Wars: Episode IV - A New Hope (1977)"
    }


@pytest.mark.parametrize(
    "text",
    ["Heat (1995)", "candidate: A | candidate: B", "user: twelve | candidate: A", "history: A |", "\ud800"],
)
def test_widget_text_errors_name_the_format(text: str) -> None:
    with pytest.raises(ValueError, match="expected text like") as err:
        parse_widget_text(text)
    assert INPUT_FORMAT in str(err.value)


def test_text_dict_and_list_inputs_agree(pipe: CCFLLMPipeline) -> None:
    text = "user: 2 | history: toy story; Fargo (1996) | candidate: the matrix"
    from_dict = pipe({"user_id": 2, "history": [1, 3], "candidate": 4})
    assert pipe(text) == from_dict
    assert pipe([text, {"user_id": 2, "history": [1, 3], "candidate": 4}]) == [from_dict, from_dict]
    assert pipe([]) == []


@pytest.mark.parametrize("batch_size", [1, 2])
def test_any_iterable_of_requests_scores_like_a_list(pipe: CCFLLMPipeline, batch_size: int) -> None:
    """A tuple or an iterator is several requests at every batch size, not one request (HF's Pipeline iterates only
    lists, generators and datasets)."""
    requests = [{"history": [1], "candidate": 2}, "history: Fargo | candidate: Heat"]
    expected = [yes(result) for result in pipe(requests)]
    for inputs in (tuple(requests), iter(requests), (request for request in requests)):
        results = list(pipe(inputs, batch_size=batch_size))
        assert [yes(result) for result in results] == pytest.approx(expected, abs=1e-5), type(inputs)
    assert pipe((), batch_size=batch_size) == []


@pytest.mark.parametrize(
    "inputs",
    [
        3,
        {"exclude": [1]},  # without candidates it recommends, but for no user and no history
        {"candidate": 1, "exclude": [2]},
        {"candidate": 1, "candidates": [2]},
        {"candidate": 1, "rating": 5},
        {"candidate": True},
        {"candidate": [1, 2]},
        {"candidates": []},
        {"candidate": " "},
        {"user_id": "12", "candidate": 1},
        "exclude: Heat",
    ],
)
def test_bad_inputs_raise_value_error_with_format(pipe: CCFLLMPipeline, inputs) -> None:
    with pytest.raises(ValueError, match="expected text like"):
        pipe(inputs)


def test_bad_parameters(pipe: CCFLLMPipeline) -> None:
    for parameters in (
        {"top_k": 0},
        {"top_k": "3"},
        {"temperature": 1.0},
        {"batch_size": 0},
        {"batch_size": "4"},
    ):
        with pytest.raises(ValueError):
            pipe({"candidates": [1, 2]}, **parameters)


ALPHABET = st.sampled_from(list("|;:() 1aHe\u00e9\n")) | st.characters()
NEAR_VALID = st.lists(
    st.tuples(
        st.sampled_from(["user", "history", "candidate", "candidates", "User", "item", ""]),
        st.text(ALPHABET, max_size=25),
    ),
    min_size=1,
    max_size=4,
).map(lambda parts: " | ".join(f"{key}: {value}" for key, value in parts))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60) | NEAR_VALID)
def test_any_string_scores_or_names_the_format(pipe: CCFLLMPipeline, text: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = pipe(text)
    except ValueError as err:
        assert INPUT_FORMAT in str(err)
        return
    assert isinstance(result, list) and result
    assert all(0 <= row["score"] <= 1 for row in result)


# --- ranking -------------------------------------------------------------------------------------------


def test_ranking_equals_one_by_one_scores(pipe: CCFLLMPipeline) -> None:
    candidates = [2, "The Matrix", 5, "Casablanca (1942)", 6]
    request = {"user_id": 3, "history": [1, "Fargo", 7]}
    ranking = pipe({**request, "candidates": candidates})
    singles = {pipe.request({**request, "candidate": item}).candidates[0]: item for item in candidates}
    assert len(ranking) == len(candidates)
    assert [row["score"] for row in ranking] == sorted((row["score"] for row in ranking), reverse=True)
    for row in ranking:
        one = yes(pipe({**request, "candidate": singles[row["item_id"]]}))
        assert row["score"] == pytest.approx(one, abs=1e-4)
    assert pipe({**request, "candidates": candidates}, top_k=2) == ranking[:2]


def test_batched_list_equals_one_by_one_in_input_order(pipe: CCFLLMPipeline) -> None:
    requests = [
        {"user_id": 2, "history": [1, 3], "candidate": 4},
        {"user_id": 3, "history": [1, "Fargo"], "candidates": [2, 5, 6]},
        "user: 2 | history: toy story; Fargo (1996) | candidate: Heat",
        {"history": [], "candidate": "Casablanca (1942)"},
        {"user_id": 2, "history": [1, 3], "candidate": 6},  # same prefix as the first request
        {"user_id": 3, "history": [7], "candidate": 2},
    ]
    one_by_one = pipe(requests)
    for batch_size in (2, 16):
        batched = pipe(iter(requests), batch_size=batch_size, top_k=2)
        assert len(batched) == len(requests)
        for got, expected in zip(batched, one_by_one, strict=True):
            if "label" in got[0]:
                assert yes(got) == pytest.approx(yes(expected), abs=1e-5)
            else:  # the ranking, cut to top_k
                assert [row["item_id"] for row in got] == [row["item_id"] for row in expected[:2]]
                assert [row["score"] for row in got] == pytest.approx([row["score"] for row in expected[:2]])
    assert pipe([], batch_size=4) == []
    built_batched = CCFLLMPipeline(model=pipe.model, processor=pipe.processor, device="cpu", batch_size=4)
    assert [yes(row) for row in built_batched(requests[:1] + requests[2:])] == pytest.approx(
        [yes(row) for row in one_by_one[:1] + one_by_one[2:]], abs=1e-5
    )


def test_a_bad_request_in_a_batched_list_stops_before_any_scoring(pipe: CCFLLMPipeline, monkeypatch) -> None:
    def must_not_run(*args, **kwargs):
        raise AssertionError("scored before every request was checked")

    monkeypatch.setattr(pipe, "forward", must_not_run)
    with pytest.raises(ValueError, match="give exactly one of"):
        pipe([{"candidate": 1}, {"candidate": 1, "candidates": [2]}], batch_size=2)


def test_a_pipeline_built_without_a_processor_reads_the_models_own(pipe: CCFLLMPipeline) -> None:
    built = CCFLLMPipeline(model=pipe.model, device="cpu")
    assert built.processor.settings() == pipe.processor.settings()
    assert built.processor.catalog == pipe.processor.catalog
    request = {"user_id": 2, "history": HISTORY, "candidates": [2, 4, 5]}
    assert built(request) == pipe(request)


def test_a_processor_that_is_not_the_ccf_one_is_refused(pipe: CCFLLMPipeline) -> None:
    with pytest.raises(TypeError, match="not a CCFLLMProcessor"):
        CCFLLMPipeline(model=pipe.model, processor=pipe.processor.tokenizer, device="cpu")


@pytest.mark.parametrize(
    ("name", "load"),
    [
        ("config.json", lambda folder: pipeline(model=folder, trust_remote_code=True)),
        (
            "processor_config.json",
            lambda folder: AutoProcessor.from_pretrained(folder, trust_remote_code=True),
        ),
    ],
)  # both fail before any remote code is run
def test_a_damaged_file_of_the_folder_is_named(pipe: CCFLLMPipeline, tmp_path: Path, name: str, load) -> None:
    folder = Path(shutil.copytree(pipe.model.name_or_path, tmp_path / "model"))
    (folder / name).write_text((folder / name).read_text()[:80])  # cut short, as by a failed copy
    with pytest.raises(OSError, match=rf"{folder / name}' is not a valid JSON file"):
        load(str(folder))


FRESH_SCRIPT = BLOCK_REPO_MODULES + textwrap.dedent(
    """
    import json, sys, warnings

    warnings.simplefilter("ignore")
    import torch
    from transformers import AutoModel, AutoProcessor, pipeline

    rows, requests = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    outputs = {}
    for source in (sys.argv[1], "org/ccf-llm"):  # the folder, and the same files as a cached Hub repository
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=True)
        model = AutoModel.from_pretrained(source, trust_remote_code=True, dtype=torch.float32)
        with torch.no_grad():
            logits = model(**processor(*rows)).logits
        ctr = pipeline(model=source, trust_remote_code=True, dtype=torch.float32)
        outputs[source] = {
            "processor": f"{type(processor).__module__}.{type(processor).__name__}",
            "model_of_processor": torch.sigmoid(logits).tolist(),
            "pipeline": [ctr(request, **parameters) for request, parameters in requests],
        }
    print(json.dumps(outputs))
    """
)


def hub_cache(folder: Path, cache: Path, repo: str = "org/ccf-llm") -> None:
    """``folder`` as the Hub cache holds a downloaded repository, so that offline loading by id finds it."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    shutil.copytree(folder, root / "snapshots" / commit)


def test_the_folder_works_offline_in_a_fresh_interpreter(pipe: CCFLLMPipeline, tmp_path: Path) -> None:
    """No repository module importable, offline: ``AutoProcessor`` gives the CCF processor, whose batch fed to
    ``AutoModel`` scores as the pipeline does; ``pipeline(model=...)`` finds its task and answers a dict, a list,
    the widget's text and a ranking as in-process; a Hub id (from the cache) works as the folder does."""
    folder = Path(pipe.model.name_or_path)
    rows = [
        [[1, 3], [], ["Fargo (1996)"]],
        [4, "Casablanca (1942)", 2],
        [2, 0, 3],
    ]  # histories, candidates, users
    singles = [{"user_id": u, "history": h, "candidate": c} for h, c, u in zip(*rows, strict=True)]
    requests = [
        *[(request, {}) for request in singles],
        (singles, {}),
        ("user: 2 | history: toy story; Fargo (1996) | candidate: the matrix", {}),
        ("history: Toy Story (1995) | candidates: Heat; Babe; Alien", {"top_k": 2}),
        ({"user_id": 3, "history": [1, 3], "candidates": [2, 4, 5, 6]}, {}),
    ]
    hub_cache(folder, tmp_path / "hub")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "HF_MODULES_CACHE": str(tmp_path / "modules"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_SCRIPT, str(folder), json.dumps(rows), json.dumps(requests)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    for source, outputs in fresh.items():
        assert outputs["processor"].startswith("transformers_modules."), source
        assert outputs["processor"].endswith(".processing_ccf.CCFLLMProcessor"), source
        pipeline_yes = [yes(result) for result in outputs["pipeline"][: len(singles)]]
        assert outputs["model_of_processor"] == pytest.approx(pipeline_yes, abs=1e-5), source
        for (request, parameters), output in zip(requests, outputs["pipeline"], strict=True):
            rows_fresh, scores_fresh = rows_and_scores(output)
            rows_here, scores_here = rows_and_scores(pipe(request, **parameters))
            assert rows_fresh == rows_here, (source, request)
            assert scores_fresh == pytest.approx(scores_here, abs=1e-5), (source, request)


def rows_and_scores(output: list) -> tuple[list[dict], list[float]]:
    """Rows without their scores, and the scores: of one result or of a list of results alike."""
    rows = [row for result in output for row in result] if isinstance(output[0], list) else output
    return [{key: value for key, value in row.items() if key != "score"} for row in rows], [
        row["score"] for row in rows
    ]


@pytest.mark.parametrize("native", [False, True])
def test_bf16_weights_run_in_float32_on_a_cpu_without_native_bf16(
    pipe: CCFLLMPipeline, monkeypatch, native: bool
) -> None:
    """Published folders hold bf16 weights: where the CPU would emulate bf16 the pipeline converts them to float32
    and says so, with the same scores as the float32 model; where bf16 is native they stay bf16."""
    monkeypatch.setattr(modeling_ccf, "native_bf16", lambda: native)  # the policy use_bf16 reads
    model = CCFLLMForCTR.from_pretrained(pipe.model.name_or_path, dtype=torch.bfloat16)
    request = {"user_id": 1, "history": HISTORY, "candidate": 2}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = CCFLLMPipeline(model=model, processor=pipe.processor, device="cpu")
    said = [str(warning.message) for warning in caught if "no native bf16" in str(warning.message)]
    assert converted.model.dtype == (torch.bfloat16 if native else torch.float32)
    assert len(said) == (0 if native else 1)
    if not native:  # float32 copies of the bf16 weights, in float32 arithmetic
        reference = CCFLLMForCTR.from_pretrained(pipe.model.name_or_path, dtype=torch.bfloat16).float()
        expected = CCFLLMPipeline(model=reference, processor=pipe.processor, device="cpu")
        assert yes(converted(request)) == pytest.approx(yes(expected(request)), abs=1e-6)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_weights_load_in_float32_where_the_cpu_would_emulate_bf16(
    pipe: CCFLLMPipeline, tmp_path: Path, monkeypatch, native: bool
) -> None:
    """``from_pretrained`` (also through ``AutoModel``) without a dtype, or with "auto": bf16 where it is native,
    float32 where it would be emulated; an explicit dtype wins."""
    CCFLLMForCTR.from_pretrained(pipe.model.name_or_path, dtype=torch.bfloat16).save_pretrained(tmp_path)
    monkeypatch.setattr(modeling_ccf, "native_bf16", lambda: native)
    by_default = torch.bfloat16 if native else torch.float32
    assert CCFLLMForCTR.from_pretrained(tmp_path).dtype == by_default
    assert CCFLLMForCTR.from_pretrained(tmp_path, dtype="auto").dtype == by_default
    assert CCFLLMForCTR.from_pretrained(tmp_path, dtype=torch.bfloat16).dtype == torch.bfloat16
