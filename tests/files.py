"""User-data files for CLI tests: `{question, answer}` JSON Lines written from task items."""

from __future__ import annotations

import json


def write_jsonl(path, items):
    path.write_text("".join(json.dumps({"question": it.question, "answer": it.answer}) + "\n" for it in items))
    return path


def user_files(tmp_path, world, model, tokenizer) -> dict:
    """A saved model plus the world's forget/retain sets as files, as `obliviate unlearn` takes them."""
    from obliviate.models.load import save_model

    return {"model": save_model(model, tokenizer, tmp_path / "model"),
            "forget": write_jsonl(tmp_path / "forget.jsonl", world.forget),
            "retain": write_jsonl(tmp_path / "retain.jsonl", world.retain), "tmp": tmp_path}
