# yocotron's decoder family for Hugging Face transformers (trust_remote_code).
#
# Written by `yocotron export-hf` for every architecture but `transformer`. It is the pre-norm
# Llama decoder of docs/architectures.md (RMSNorm, GQA attention with half-split RoPE, SwiGLU, an
# untied head) whose layers take their keys and values from the per-layer KV plan that
# `build_kv_plan` rebuilds from config.json, as yocotron's src/model/kv_plan.cpp does:
#   own          the layer's own projection (K after RoPE)
#   reuse        the final K (or V) of an earlier layer
#   scalar_mix   scale * (w0 * final[from] + w1 * own)          YOCO++ (learned), ResFormer (λ)
#   vector_mix   [w0, w0] * final[from] + [w1, w1] * final[from2]  FusedKV (per RoPE pair, all heads)
#   head_splice  even KV heads own, odd heads from final[from]   SkipV1Former
# Every call runs every layer on every position (no YOCO early exit, no KV cache): scoring
# (lm-evaluation-harness) gets the logits of all positions; generate() recomputes the prefix.
# Parameter names equal yocotron's with the "model." prefix, so model.safetensors loads as is.
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

try:
    from transformers import GenerationMixin
except ImportError:  # very old transformers: PreTrainedModel itself generates
    GenerationMixin = object
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_yocotron import YocotronConfig


# ---- the KV plan --------------------------------------------------------------------------------

def _src(kind, frm=-1, frm2=-1, scale=1.0, w=(0.0, 1.0), learnable=False, random_init=False):
    return {"kind": kind, "from": frm, "from2": frm2, "scale": scale, "w": w,
            "learnable": learnable, "random_init": random_init}


def build_kv_plan(config):
    """Per layer (0-based): {"k": source, "v": source, "own_k_heads", "own_v_heads"}."""
    arch, L, kv = config.yocotron_arch, config.num_hidden_layers, config.num_key_value_heads
    n = L // 2
    own = _src("own")
    k, v = [own] * L, [own] * L
    if arch in ("yoco", "yocopp", "fusedkv", "fusedkv_lite"):
        if L % 2:
            raise ValueError(f"num_hidden_layers={L} must be even for {arch}")
        for i in range(n, L):
            k[i] = v[i] = _src("reuse", n - 1)
    if arch == "yocopp":
        s = config.yocopp_scaling_factor
        mix = _src("scalar_mix", 0, scale=s, w=(0.0, 1.0 / s), learnable=True)
        for i in range(1, n):
            k[i] = v[i] = mix
    elif arch == "fusedkv":
        rnd = config.fusedkv_init != "lite"
        for i in range(n, L):
            k[i] = _src("vector_mix", 0, n - 1, w=(0.0, 1.0), learnable=True, random_init=rnd)
            v[i] = _src("vector_mix", 0, n - 1, w=(1.0, 0.0), learnable=True, random_init=rnd)
    elif arch == "fusedkv_lite":
        for i in range(n, L):
            k[i], v[i] = _src("reuse", n - 1), _src("reuse", 0)
    elif arch == "cla2":
        for i in range(1, L, 2):
            k[i] = v[i] = _src("reuse", i - 1)
    elif arch == "skipv1":
        for i in range(1, L):
            v[i] = _src("head_splice", 0)
    elif arch == "resformer":
        lam = (config.resformer_lambda1, config.resformer_lambda2)
        for i in range(1, L):
            v[i] = _src("scalar_mix", 0, w=lam, learnable=config.resformer_learnable)

    def own_heads(s):
        return {"own": kv, "scalar_mix": kv, "head_splice": kv // 2}.get(s["kind"], 0)

    return [{"k": k[i], "v": v[i], "own_k_heads": own_heads(k[i]), "own_v_heads": own_heads(v[i])} for i in range(L)]


def _combine(src, own, finals, weight):
    kind = src["kind"]
    if kind == "own":
        return own
    if kind == "reuse":
        return finals[src["from"]]
    a = finals[src["from"]]
    if kind == "scalar_mix":
        w = weight.to(a.dtype)
        mixed = w[0] * a + w[1] * own
        return mixed if src["scale"] == 1.0 else mixed * src["scale"]
    if kind == "vector_mix":
        w = torch.cat([weight, weight], dim=-1).to(a.dtype)  # tied within each RoPE pair (i, i + D/2)
        return w[0] * a + w[1] * finals[src["from2"]]
    if kind == "head_splice":
        odd = a[:, 1::2]
        return torch.stack([own, odd], dim=2).reshape(a.shape)
    raise ValueError(f"unknown KV source {kind}")


# ---- layers ---------------------------------------------------------------------------------------

class YocotronRMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()  # normalise in fp32, scale in the input dtype
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def _rope_tables(positions, head_dim, theta, dtype):
    """cos, sin of [B, T, D] for integer positions [B, T] (computed in float64, as yocotron)."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    freqs = positions.to(torch.float64)[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(torch.float32).to(dtype), emb.sin().to(torch.float32).to(dtype)


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def _rope(x, cos, sin):  # x: [B, h, T, D]; cos, sin: [B, T, D]
    return x * cos[:, None] + _rotate_half(x) * sin[:, None]


class YocotronMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class YocotronAttention(nn.Module):
    def __init__(self, config, plan):
        super().__init__()
        d, self.D, self.H = config.hidden_size, config.head_dim, config.num_attention_heads
        self.plan = plan
        self.q_proj = nn.Linear(d, self.H * self.D, bias=False)
        if plan["own_k_heads"]:
            self.k_proj = nn.Linear(d, plan["own_k_heads"] * self.D, bias=False)
        if plan["own_v_heads"]:
            self.v_proj = nn.Linear(d, plan["own_v_heads"] * self.D, bias=False)
        self.o_proj = nn.Linear(self.H * self.D, d, bias=False)
        for name, src in (("k_mix", plan["k"]), ("v_mix", plan["v"])):
            if src["kind"] == "scalar_mix":
                w = torch.tensor(src["w"], dtype=torch.float32)
            elif src["kind"] == "vector_mix":
                w = torch.stack([torch.full((self.D // 2,), src["w"][0]), torch.full((self.D // 2,), src["w"][1])])
            else:
                continue
            if src["learnable"]:
                setattr(self, name, nn.Parameter(w))
            else:  # fixed (ResFormer λ): part of the config, not of model.safetensors
                setattr(self, "_" + name + "_fixed", tuple(float(x) for x in src["w"]))

    def _weight(self, name, like):
        if hasattr(self, "_" + name + "_fixed"):
            return torch.tensor(getattr(self, "_" + name + "_fixed"), dtype=torch.float32, device=like.device)
        return getattr(self, name, None)

    def forward(self, x, cos, sin, mask, finals_k, finals_v):
        B, T, _ = x.shape
        q = _rope(self.q_proj(x).view(B, T, self.H, self.D).transpose(1, 2), cos, sin)
        own_k = own_v = None
        if hasattr(self, "k_proj"):
            own_k = _rope(self.k_proj(x).view(B, T, -1, self.D).transpose(1, 2), cos, sin)
        if hasattr(self, "v_proj"):
            own_v = self.v_proj(x).view(B, T, -1, self.D).transpose(1, 2)
        finals_k.append(_combine(self.plan["k"], own_k, finals_k, self._weight("k_mix", x)))
        finals_v.append(_combine(self.plan["v"], own_v, finals_v, self._weight("v_mix", x)))
        k, v = finals_k[-1], finals_v[-1]
        group = self.H // k.shape[1]  # query head h reads KV head h // group
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = torch.matmul(q, k.transpose(-2, -1)).float() / math.sqrt(self.D) + mask
        probs = torch.softmax(scores, dim=-1).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, self.H * self.D)
        return self.o_proj(out)


class YocotronBlock(nn.Module):
    def __init__(self, config, plan):
        super().__init__()
        self.input_layernorm = YocotronRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = YocotronAttention(config, plan)
        self.post_attention_layernorm = YocotronRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = YocotronMLP(config)

    def forward(self, x, cos, sin, mask, finals_k, finals_v):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, finals_k, finals_v)
        return h + self.mlp(self.post_attention_layernorm(h))


# ---- models ---------------------------------------------------------------------------------------

class YocotronPreTrainedModel(PreTrainedModel):
    config_class = YocotronConfig
    base_model_prefix = "model"
    _no_split_modules = ["YocotronBlock"]
    _keep_in_fp32_modules = ["k_mix", "v_mix"]  # trained and exported in fp32
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        # Only for weights missing from a checkpoint (from_pretrained loads the rest).
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, std)
        elif isinstance(module, YocotronRMSNorm):
            module.weight.data.fill_(1.0)
        elif isinstance(module, YocotronAttention):
            for name, src in (("k_mix", module.plan["k"]), ("v_mix", module.plan["v"])):
                w = getattr(module, name, None)
                if not isinstance(w, nn.Parameter):
                    continue
                if src["random_init"]:
                    w.data.normal_(0.0, 1.0)
                elif w.dim() == 1:
                    w.data.copy_(torch.tensor(src["w"], dtype=w.dtype))
                else:
                    w.data[0].fill_(src["w"][0])
                    w.data[1].fill_(src["w"][1])


class YocotronModel(YocotronPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.plan = build_kv_plan(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(YocotronBlock(config, p) for p in self.plan)
        self.norm = YocotronRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, **kwargs):
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = x.shape
        dev = x.device
        keys_ok = torch.ones(B, T, dtype=torch.bool, device=dev)
        if attention_mask is not None and attention_mask.dim() == 2:
            keys_ok = attention_mask[:, -T:].to(dev).bool()
        if position_ids is None:
            # Left-padded batches (generate): positions count the real tokens only, as in Llama.
            position_ids = (keys_ok.long().cumsum(-1) - 1).clamp(min=0)
        cos, sin = _rope_tables(position_ids, self.config.head_dim, self.config.rope_theta, x.dtype)
        causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
        allowed = causal[None, None] & keys_ok[:, None, None, :]
        # A finite minimum, not -inf: a padding query that sees no key stays finite, not NaN.
        mask = torch.zeros(B, 1, T, T, dtype=torch.float32, device=dev)
        mask.masked_fill_(~allowed, torch.finfo(torch.float32).min)
        finals_k, finals_v = [], []
        for layer in self.layers:
            x = layer(x, cos, sin, mask, finals_k, finals_v)
        return self.norm(x)


class YocotronForCausalLM(YocotronPreTrainedModel, GenerationMixin):
    def __init__(self, config):
        super().__init__(config)
        self.model = YocotronModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        # No KV cache: every step sees the whole sequence so far.
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                return_dict=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            inputs_embeds=inputs_embeds)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                                   labels[:, 1:].reshape(-1).to(logits.device), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=None)
