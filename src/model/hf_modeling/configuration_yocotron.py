# Configuration of a yocotron export for Hugging Face transformers (trust_remote_code).
#
# Written by `yocotron export-hf` next to model.safetensors for every architecture but
# `transformer` (which is plain LlamaForCausalLM). The Llama shape fields plus the KV-plan
# settings (yocotron_arch, yocopp_scaling_factor, fusedkv_init, resformer_*) are all the modeling
# file needs to rebuild the same per-layer KV plan as yocotron (docs/architectures.md).
try:  # transformers >= 5
    from transformers import PreTrainedConfig as _BaseConfig
except ImportError:  # transformers 4.x
    from transformers import PretrainedConfig as _BaseConfig

ARCHITECTURES = ("yoco", "yocopp", "fusedkv", "fusedkv_lite", "cla2", "skipv1", "resformer", "transformer")


class YocotronConfig(_BaseConfig):
    model_type = "yocotron"

    def __init__(
        self,
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        initializer_range=0.02,
        yocotron_arch="yoco",
        yocopp_scaling_factor=35.0,
        fusedkv_init="normal",
        resformer_learnable=False,
        resformer_lambda1=0.5,
        resformer_lambda2=0.5,
        use_cache=False,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        **kwargs,
    ):
        if yocotron_arch not in ARCHITECTURES:
            raise ValueError(f"yocotron_arch={yocotron_arch!r}: expected one of {', '.join(ARCHITECTURES)}")
        if hidden_size % num_attention_heads or num_attention_heads % num_key_value_heads:
            raise ValueError("hidden_size must divide by num_attention_heads, and that by num_key_value_heads")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = hidden_size // num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.initializer_range = initializer_range
        self.yocotron_arch = yocotron_arch
        self.yocopp_scaling_factor = float(yocopp_scaling_factor)
        self.fusedkv_init = fusedkv_init
        self.resformer_learnable = bool(resformer_learnable)
        self.resformer_lambda1 = float(resformer_lambda1)
        self.resformer_lambda2 = float(resformer_lambda2)
        # The model recomputes every position on each call (no KV cache): generate() works, slower.
        self.use_cache = False
        kwargs.pop("head_dim", None)
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
