"""Load a published folder the way a Hub user would, and print a few predictions and a top-5 ranking.

Run as a file in a fresh interpreter (``python -I showcase.py FOLDER``): it imports nothing from this
repository and refuses to, so what runs is the folder's own remote code.
"""

import importlib.abc
import json
import sys
import warnings
from pathlib import Path

BLOCKED = {"ccf_llm", "configuration_ccf", "modeling_ccf", "processing_ccf", "pipeline_ccf"}


class BlockRepoModules(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the published folder must work on its own")


def main(folder: str) -> None:
    sys.meta_path.insert(0, BlockRepoModules())
    warnings.simplefilter("ignore")
    import torch
    from transformers import AutoModel, AutoProcessor, pipeline

    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    print(f"AutoModel: {type(model).__module__}.{type(model).__name__}, fusion={model.config.fusion}")
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    print(f"AutoProcessor: {type(processor).__module__}.{type(processor).__name__}")
    # The defaults a user gets: the stored bf16 weights, loaded in float32 on a CPU that would emulate bf16.
    stored = json.loads((Path(folder) / "config.json").read_text()).get("dtype", "an unnamed dtype")
    ctr = pipeline(model=folder, trust_remote_code=True, device="cpu")
    print(f"weights: stored in {stored}; AutoModel loads {model.dtype}, the pipeline runs {ctr.model.dtype}")
    catalog = ctr.processor.catalog
    titles = [catalog[iid] for iid in sorted(catalog)[:12]]
    history, candidates = titles[:3], titles[3:12]
    text = f"history: {'; '.join(history)} | candidate: {candidates[0]}"
    print(f"\nwidget text: {text}\n -> {json.dumps(ctr(text))}")
    answer = ctr({"user_id": 1, "history": history, "candidate": candidates[1]})
    with torch.no_grad():
        logit = model.to(ctr.model.dtype)(**processor([history], [candidates[1]], user_ids=[1])).logits
    print(
        f"user 1, candidate {candidates[1]!r}: P(Yes) = {answer[0]['score']:.3f} "
        f"(model(**processor(...)): {torch.sigmoid(logit).item():.3f})"
    )
    requests = [{"history": history[:1], "candidate": c} for c in candidates[2:4]]  # a list: one answer each
    for request, answer in zip(requests, ctr(requests), strict=True):
        print(
            f"no user id, history {history[:1]}, candidate {request['candidate']!r}: P(Yes) = {answer[0]['score']:.3f}"
        )
    print(f"\ntop-5 of {len(candidates)} candidates for user 1 (history: {'; '.join(history)}):")
    for rank, row in enumerate(ctr({"user_id": 1, "history": history, "candidates": candidates}, top_k=5), 1):
        print(f"  {rank}. {row['item']}  (score {row['score']:.3f})")


if __name__ == "__main__":
    main(sys.argv[1])
