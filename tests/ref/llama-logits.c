// Logits of every position of a token sequence from llama.cpp's libllama, as raw little-endian float32
// [positions, vocab]: the reference the llama-architecture tests compare with (tests/data/llama-arch/README.md).
// Build: cc -O2 llama-logits.c -I$SRC/include -I$SRC/ggml/include -L$SRC/build/bin -lllama -o llama-logits
// Run:   llama-logits MODEL.gguf 1,2,3 OUT.f32 [f32|f16|q8_0]   (f32: f32 KV cache, no flash attention:
//        float-exact; q8_0: llama.cpp's `-ctk q8_0 -ctv q8_0`, with the flash attention a quantized V needs)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llama.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf TOKENS OUT.f32 [f32|f16|q8_0]\n", argv[0]);
        return 2;
    }
    llama_token tokens[4096];
    int n = 0;
    for (char *t = strtok(argv[2], ","); t && n < 4096; t = strtok(NULL, ",")) tokens[n++] = atoi(t);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n < 64 ? 64 : n;
    cp.n_batch = cp.n_ubatch = cp.n_ctx;
    cp.n_threads = cp.n_threads_batch = 2;
    if (argc > 4 && strcmp(argv[4], "f32") == 0) {
        cp.type_k = cp.type_v = GGML_TYPE_F32;
        // The CPU flash-attention kernel rounds to f16 on the way; the plain path keeps f32 end to end.
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    if (argc > 4 && strcmp(argv[4], "q8_0") == 0) {
        cp.type_k = cp.type_v = GGML_TYPE_Q8_0;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    }
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return 1;
    struct llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = tokens[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch) != 0) return 1;
    int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    FILE *out = fopen(argv[3], "wb");
    for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), vocab, out);
    fclose(out);
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
