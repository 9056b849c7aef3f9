# Written by bitnet-studio beside a model trained with norms that a stock Llama / Qwen2 / Mistral
# class does not have. Load the folder with
#     AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
# config.json says which norms the model has (`bitnet_studio`), and `auto_map` points here.
#
# - post-attention RMSNorm (`model.layers.N.post_attn_norm.weight`, eps `post_attn_norm_eps`): on the
#   attention block's output, after o_proj and before the residual add;
# - SubLN (`model.layers.N.self_attn.attn_sub_norm.weight`, `model.layers.N.mlp.ffn_sub_norm.weight`,
#   eps `rms_norm_eps`): on the inputs of o_proj and down_proj.
# Each is an RMSNorm in float32, x * rsqrt(mean(x^2) + eps) * g, as the model's own norms.
from transformers.models.llama.modeling_llama import LlamaForCausalLM, LlamaRMSNorm
from transformers.models.mistral.modeling_mistral import MistralForCausalLM
from transformers.models.qwen2.modeling_qwen2 import Qwen2ForCausalLM


def _wrap_attention(attn, norm):
    # The attention module's output (its first value) through the norm. Wrapping the module's
    # forward (not o_proj's) survives transformers' BitNet quantizer, which replaces o_proj.
    inner = attn.forward

    def forward(*args, **kwargs):
        out = inner(*args, **kwargs)
        return (norm(out[0]),) + tuple(out[1:])

    attn.forward = forward


def _norm_input(owner, attr, norm):
    # The input of `owner.<attr>` (a linear layer) through the norm: a pre-hook, put on the layer
    # that is there at the first call, so that it is the one transformers' BitNet quantizer put in
    # place of the original.
    inner = owner.forward

    def forward(*args, **kwargs):
        linear = getattr(owner, attr)
        if not getattr(linear, "_bitnet_studio_norm", False):
            linear.register_forward_pre_hook(lambda _m, a: (norm(a[0]),) + tuple(a[1:]))
            linear._bitnet_studio_norm = True
        return inner(*args, **kwargs)

    owner.forward = forward


def _add_norms(model, config):
    extra = getattr(config, "bitnet_studio", {}) or {}
    for layer in model.model.layers:
        if extra.get("post_attn_norm"):
            layer.post_attn_norm = LlamaRMSNorm(config.hidden_size, eps=extra.get("post_attn_norm_eps", 1e-6))
            _wrap_attention(layer.self_attn, layer.post_attn_norm)
        if extra.get("subln"):
            attn, mlp = layer.self_attn, layer.mlp
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
            attn.attn_sub_norm = LlamaRMSNorm(config.num_attention_heads * head_dim, eps=config.rms_norm_eps)
            mlp.ffn_sub_norm = LlamaRMSNorm(config.intermediate_size, eps=config.rms_norm_eps)
            _norm_input(attn, "o_proj", attn.attn_sub_norm)
            _norm_input(mlp, "down_proj", mlp.ffn_sub_norm)


class LlamaWithExtraNorms(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        _add_norms(self, config)


class Qwen2WithExtraNorms(Qwen2ForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        _add_norms(self, config)


class MistralWithExtraNorms(MistralForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        _add_norms(self, config)
