"""Every component of the spec, by name. Tests are generated from this table."""

from __future__ import annotations

from dataclasses import replace

from spec.attention import ATTENTION_WEIGHTS, SCALED_DOT_PRODUCT_ATTENTION
from spec.core import Component
from spec.decoding import BEAM_SEARCH, GREEDY_DECODE
from spec.embeddings import EMBED_WITH_POSITIONS, SINUSOIDAL_POSITIONAL_ENCODING, TIED_OUTPUT_LOGITS, TOKEN_EMBEDDING
from spec.gradient_checks import gradient_properties
from spec.layers import ADD_AND_NORM, DROPOUT, LAYER_NORM, POSITION_WISE_FFN
from spec.masks import CAUSAL_MASK, KEY_PADDING_MASK
from spec.model import ENCODER_DECODER
from spec.multi_head import MULTI_HEAD_ATTENTION
from spec.recurrent import CONTEXT_VECTOR, RECURRENT_CELL, RNN_ENCODER
from spec.seq2seq import (
    ADDITIVE_ATTENTION_WEIGHTS,
    ATTENTION_CONTEXT,
    ATTENTION_DECODER,
    ATTENTIONAL_HIDDEN,
    FREE_RUNNING_DECODER,
    MULTIPLICATIVE_ATTENTION_WEIGHTS,
)
from spec.softmax import SOFTMAX
from spec.stacks import DECODER, DECODER_LAYER, ENCODER, ENCODER_LAYER, INCREMENTAL_DECODER
from spec.training import CROSS_ENTROPY, SHIFT_RIGHT

_FORWARD: dict[str, Component] = {
    c.name: c
    for c in (
        SOFTMAX,
        ATTENTION_WEIGHTS,
        SCALED_DOT_PRODUCT_ATTENTION,
        MULTI_HEAD_ATTENTION,
        CAUSAL_MASK,
        KEY_PADDING_MASK,
        SINUSOIDAL_POSITIONAL_ENCODING,
        TOKEN_EMBEDDING,
        EMBED_WITH_POSITIONS,
        TIED_OUTPUT_LOGITS,
        POSITION_WISE_FFN,
        LAYER_NORM,
        ADD_AND_NORM,
        DROPOUT,
        SHIFT_RIGHT,
        CROSS_ENTROPY,
        ENCODER_LAYER,
        DECODER_LAYER,
        ENCODER,
        DECODER,
        INCREMENTAL_DECODER,
        ENCODER_DECODER,
        GREEDY_DECODE,
        BEAM_SEARCH,
        RECURRENT_CELL,
        RNN_ENCODER,
        CONTEXT_VECTOR,
        ADDITIVE_ATTENTION_WEIGHTS,
        MULTIPLICATIVE_ATTENTION_WEIGHTS,
        ATTENTION_CONTEXT,
        ATTENTIONAL_HIDDEN,
        ATTENTION_DECODER,
        FREE_RUNNING_DECODER,
    )
}

# Gradient properties (spec/gradients.py) join the forward ones of the components they cover.
COMPONENTS: dict[str, Component] = {
    name: replace(c, properties=c.properties + gradient_properties(name)) for name, c in _FORWARD.items()
}
