"""The tiny model's save/load round trip, LoRA training and reload, target modules per architecture."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from training.config import AdapterConfig, ModelConfig  # noqa: E402
from training.data import build_examples, encode_example  # noqa: E402
from training_fixtures import toy_records  # noqa: E402

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def tokenizer():
    torch.set_num_threads(1)
    from training.tokenizer import example_texts, train_tokenizer

    return train_tokenizer(example_texts(build_examples(toy_records(100, 0)["train"])), vocab_size=500)


@pytest.fixture()
def batch(tokenizer):
    examples = build_examples(toy_records(8, 0, seed=3)["train"])
    rows = [encode_example(e, tokenizer, 128) for e in examples]
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in rows])
    labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in rows])
    mask = torch.tensor([r["attention_mask"] + [0] * (width - len(r["attention_mask"])) for r in rows])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_tiny_model_is_sized_from_the_tokenizer_and_reloads_exactly(tokenizer, batch, tmp_path):
    from training.modeling import build_tiny_model, count_parameters, load_base_model

    model = build_tiny_model(tokenizer, ModelConfig(), tmp_path / "tiny", seed=0)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.dtype == torch.float32
    # a Llama with tied embeddings: embeddings, then per layer q/k/v/o, gate/up/down and two norms, then the final norm
    config = ModelConfig()
    h, ff, layers = config.hidden_size, config.intermediate_size, config.num_layers
    assert count_parameters(model) == len(tokenizer) * h + layers * (4 * h * h + 3 * h * ff + 2 * h) + h
    again = load_base_model(tmp_path / "tiny")
    model.eval(), again.eval()
    with torch.no_grad():
        first = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        second = again(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(first, second)
    # the same seed builds the same weights
    twin = build_tiny_model(tokenizer, ModelConfig(), tmp_path / "twin", seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))


def test_lora_trains_changes_outputs_and_reloads_exactly(tokenizer, batch, tmp_path):
    pytest.importorskip("peft")
    from peft import PeftModel

    from training.modeling import apply_lora, build_tiny_model, count_parameters, load_base_model

    base = build_tiny_model(tokenizer, ModelConfig(), tmp_path / "base", seed=0)
    model = apply_lora(base, AdapterConfig(r=4, dropout=0.0))
    assert 0 < count_parameters(model, trainable_only=True) < count_parameters(model) / 10
    targets = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if "lora_A" in name}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj"}
    model.eval()
    with torch.no_grad():
        before = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.clone()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():
        after = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert not torch.allclose(before, after)
    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(load_base_model(tmp_path / "base"), tmp_path / "adapter").eval()
    with torch.no_grad():
        again = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(after, again)


def test_lora_targets_follow_the_architecture():
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from training.modeling import lora_target_modules

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=16))
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    assert lora_target_modules(gpt2) == ["c_attn"]
    assert lora_target_modules(llama) == ["q_proj", "k_proj", "v_proj", "o_proj"]

    class Unknown(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mix = torch.nn.Linear(4, 4)
            self.lm_head = torch.nn.Linear(4, 4)

    assert lora_target_modules(Unknown()) == ["mix"]
