"""HuggingFace generate (`--adapter hf-generate`; `pip install -e ".[thirdparty]"`): greedy_decode
and beam_search through `GenerationMixin.generate`, driven by a tiny model whose next-token logits
are the spec's (V, V) table (row = the previous token), so HF's own search code is what runs.

greedy: `generate(do_sample=False, num_beams=1, max_new_tokens=max_len, eos_token_id=eos)` from
[[bos]]; beam: `num_beams=num_return_sequences=beam_width`, `length_penalty=alpha`,
`early_stopping="never"` (HF's exhaustive setting). The returned ids after the prompt are the
tokens; HF pads finished sequences with pad_token_id, given here as V (never a real token), which
becomes the spec's -1. Under `--semantics length_penalty=length --semantics beam_eos=frees_a_beam`
(HF's conventions, reference/semantics.py) its beam search is checked as the spec's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig, PretrainedConfig, PreTrainedModel
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import CausalLMOutput

from adapters import Deviation


class TableConfig(PretrainedConfig):
    model_type = "tcs_table"


class TableLM(PreTrainedModel, GenerationMixin):
    """logits[b, t] = table[input_ids[b, t]]: a bigram model, the spec's decoding table."""

    config_class = TableConfig
    main_input_name = "input_ids"

    def __init__(self, config: TableConfig, table: torch.Tensor):
        super().__init__(config)
        # a parameter, not a buffer: HF finds the model's device from its first parameter
        self.table = torch.nn.Parameter(table, requires_grad=False)

    def forward(self, input_ids: torch.Tensor, **kwargs: object) -> CausalLMOutput:
        logits: Any = self.table[input_ids]  # (B, L, V)
        return CausalLMOutput(logits=logits)


def _one_token_vocabulary(inputs: Mapping[str, Any]) -> bool:
    return inputs["logprobs"].shape[0] == 1


# What HF's beam search does differently, each its own declaration: two are named alternatives of
# the spec's (reference/semantics.py: under `--semantics length_penalty=length --semantics
# beam_eos=frees_a_beam` they are the spec), the rest are triggered by the inputs that show them.
BEAM_EOS = Deviation(
    "HF's beam search keeps num_beams live beams at every step: a candidate ending in EOS among "
    "the top num_beams of the 2 num_beams best goes to the finished set without taking a live "
    "beam's place (generation/utils.py _beam_search), where the spec keeps the beam_width best "
    "candidates, finished ones included",
    convention=("beam_eos", "frees_a_beam"),
)
LENGTH_PENALTY = Deviation(
    "the score is sum log p / |Y|^length_penalty (generation/utils.py _update_finished_beams, "
    "'topk_log_probs / ((cur_len + 1 - decoder_prompt_len) ** length_penalty)', transformers "
    "4.57.1), not GNMT's ((5 + |Y|) / 6)^alpha",
    convention=("length_penalty", "length"),
)


def _ties(inputs: Mapping[str, Any]) -> bool:
    """A tie decided the spec's result: breaking every tie the other way changes it (equal sums
    come from equal entries, and from two hypotheses made of the same transitions in another
    order), or so does HF's float32 table."""
    from reference.decoding import _search

    args = [inputs[n] for n in ("logprobs", "bos", "eos", "max_len", "beam_width")]
    args.append(inputs.get("alpha", 0.0))
    spec = _search(*args)
    if _search(*args, lower_ids_first=False) != spec:
        return True
    table = np.asarray(inputs["logprobs"], np.float32).astype(np.float64)
    return _search(table, *args[1:]) != spec


def _renormalised(inputs: Mapping[str, Any]) -> bool:
    t = np.asarray(inputs["logprobs"], np.float64)
    with np.errstate(divide="ignore"):
        lse = np.log(np.exp(t).sum(-1))  # (V,)
    return bool((np.abs(lse) > 1e-6).any())


def _dummy_beams(inputs: Mapping[str, Any]) -> bool:
    t = np.asarray(inputs["logprobs"])
    return 2 * int(inputs["beam_width"]) > t.shape[0] or bool(np.isneginf(t).any())


TIES = Deviation(
    "equal scores come in torch.topk's order, not lower ids first (and HF scores in float32): "
    "generation/utils.py _get_top_k_continuations, 'torch.topk(accumulated_log_probs, "
    "k=beams_to_keep)' (transformers 4.57.1)",
    _ties,
    "a tie decides the spec's result",
)
RENORMALISED = Deviation(
    "HF takes log_softmax of the model's logits (in float32) before scoring: a table whose rows "
    "are not normalised log-probabilities is renormalised (generation/utils.py _beam_search, "
    "'log_probs = nn.functional.log_softmax(logits, dim=-1)', transformers 4.57.1)",
    _renormalised,
    "a row of the table is not normalised",
)
DUMMY_BEAMS = Deviation(
    "HF starts from num_beams copies of the prompt, all but one at -1e9, and takes the top "
    "2 num_beams of every step's scores: with fewer finite candidates (2 beam_width > V, or -inf "
    "transitions) the dummy beams and -inf candidates fill the beams (generation/utils.py "
    "_beam_search, 'running_beam_scores[:, 1:] = -1e9', 'beams_to_keep = max(2, 1 + "
    "n_eos_tokens) * num_beams', transformers 4.57.1)",
    _dummy_beams,
    "2 beam_width > V or -inf transitions",
)
BEAM = (BEAM_EOS, LENGTH_PENALTY, TIES, RENORMALISED, DUMMY_BEAMS)
EXHAUSTIVE = (
    "HF's beam search with beams to spare (num_beams = V^max_len, or -inf transitions) fills them "
    "from its -1e9 dummy beams and -inf candidates: the result repeats hypotheses, continues past "
    "EOS ([1, 2] with eos = 1) and misses the optimum (best -2.96 against -2.00 at num_beams = 9, "
    "V = 3, max_len = 2; transformers 4.57.1)"
)
UNCHECKED = (
    "HF generate validates no id against the vocabulary (eos = V, bos = -1 run) and takes whatever "
    "logits the model returns (NaN, rows of -inf, a non-square table here)"
)


class HFGenerate:
    name = "hf-generate"

    def __init__(self) -> None:
        self.deviations: dict[str, object] = {
            "beam_search.matches_reference": BEAM,
            "beam_search.ordered_by_score": BEAM,
            "beam_search.exhaustive_beam_is_optimal": EXHAUSTIVE,
            "beam_search.*": Deviation(
                "HF's beam search takes torch.topk of 2 num_beams over num_beams x V scores: a "
                "vocabulary of one token fails (RuntimeError: selected index k out of range; "
                "generation/utils.py _get_top_k_continuations, transformers 4.57.1)",
                _one_token_vocabulary,
                "V = 1",
            ),
            "beam_search.refuses[nan_alpha]": "generate takes length_penalty=NaN without a check",
            **{
                f"{c}.refuses[{b}]": UNCHECKED
                for c in ("greedy_decode", "beam_search")
                for b in (
                    "eos_out_of_range",
                    "negative_bos",
                    "table_not_square",
                    "nan_logprob",
                    "row_all_neg_inf",
                )
            },
        }

    def _model(self, logprobs: np.ndarray) -> TableLM:
        V = logprobs.shape[0]
        config = TableConfig(vocab_size=V, is_encoder_decoder=False)
        return TableLM(config, torch.as_tensor(logprobs.astype(np.float32))).eval()

    def _generate(self, logprobs, bos, eos, max_len, **search) -> np.ndarray:
        V = logprobs.shape[0]
        model = self._model(logprobs)
        config = GenerationConfig(
            max_new_tokens=int(max_len),
            eos_token_id=int(eos),
            pad_token_id=V,
            bos_token_id=int(bos),
            do_sample=False,
            use_cache=False,
            **search,
        )
        prompt = torch.tensor([[int(bos)]])
        with torch.no_grad():
            out = model.generate(
                prompt, attention_mask=torch.ones_like(prompt), generation_config=config
            )
        ids = out[:, 1:].numpy().astype(np.int64)  # after the prompt
        return np.where(ids == V, -1, ids)

    def greedy_decode(self, logprobs, bos, eos, max_len):
        return self._generate(logprobs, bos, eos, max_len, num_beams=1)[0]

    def beam_search(self, logprobs, bos, eos, max_len, beam_width, alpha=0.0):
        W = int(beam_width)
        ids = self._generate(
            logprobs,
            bos,
            eos,
            max_len,
            num_beams=W,
            num_return_sequences=W,
            length_penalty=float(alpha),
            early_stopping="never",
        )
        out = np.full((W, int(max_len)), -1, dtype=np.int64)
        out[:, : ids.shape[1]] = ids
        return out


adapter = HFGenerate()
