/* fp train: fine-tune a Hugging Face Llama-family model (full or LoRA) on a
 * token-id file or a text file (tokenized with the model's tokenizer.json). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"
#include "fedproxy/error.h"
#include "fedproxy/model.h"
#include "fedproxy/runtime.h"
#include "fedproxy/train.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: fp train --model DIR (--text FILE | --tokens FILE)\n"
            "                (--lora-rank R [--lora-alpha A] [--lora-targets q,k,v,o,gate,up,down]\n"
            "                 [--lora-layers 0,1,6,7] [--lora-dropout P] | --full)\n"
            "                [--optimizer adamw|sgd] [--lr X] [--steps N] [--batch B] [--seq T] [--accum K]\n"
            "                [--clip X] [--warmup N] [--cosine MIN_RATIO] [--weight-decay X] [--seed S]\n"
            "                [--out DIR] [--resume DIR] [--save-every N] [--base-dtype f32|f16|bf16] [--json]\n"
            "--out DIR receives the adapter (PEFT layout) or the full model, and checkpoint.fpck;\n"
            "--resume DIR continues from DIR/checkpoint.fpck exactly.\n"
            "--base-dtype f16|bf16 keeps the frozen base's linear weights in 16 bits on the device (LoRA only).\n");
}

int fp_cmd_train(int argc, char **argv)
{
    if (fp_cli_flag(argc, argv, "--help")) {
        usage();
        return 0;
    }
    const char *model_dir = fp_cli_opt(argc, argv, "--model");
    const char *rank_s = fp_cli_opt(argc, argv, "--lora-rank");
    int full = fp_cli_flag(argc, argv, "--full"), json = fp_cli_flag(argc, argv, "--json");
    if (!model_dir || (!rank_s == !full)) {
        usage();
        return 2;
    }
    fp_train_config tc;
    fp_train_config_default(&tc);
    const char *v;
    if ((v = fp_cli_opt(argc, argv, "--optimizer"))) {
        if (!strcmp(v, "adamw"))
            tc.optimizer = FP_OPT_ADAMW;
        else if (!strcmp(v, "sgd"))
            tc.optimizer = FP_OPT_SGD;
        else {
            fprintf(stderr, "fp train: unknown optimizer '%s' (adamw or sgd)\n", v);
            return 2;
        }
    }
    if (tc.optimizer == FP_OPT_SGD)
        tc.clip = 0; /* plain SGD on the mean token loss unless --clip says otherwise */
    if ((v = fp_cli_opt(argc, argv, "--lr")))
        tc.lr = strtof(v, NULL);
    if ((v = fp_cli_opt(argc, argv, "--steps")))
        tc.steps = strtoll(v, NULL, 10);
    if ((v = fp_cli_opt(argc, argv, "--batch")))
        tc.batch = strtoll(v, NULL, 10);
    if ((v = fp_cli_opt(argc, argv, "--seq")))
        tc.seq = strtoll(v, NULL, 10);
    if ((v = fp_cli_opt(argc, argv, "--accum")))
        tc.accum = atoi(v);
    if ((v = fp_cli_opt(argc, argv, "--clip")))
        tc.clip = strtof(v, NULL);
    if ((v = fp_cli_opt(argc, argv, "--warmup")))
        tc.warmup = strtoll(v, NULL, 10);
    if ((v = fp_cli_opt(argc, argv, "--cosine")))
        tc.min_lr_ratio = strtof(v, NULL);
    if ((v = fp_cli_opt(argc, argv, "--weight-decay")))
        tc.weight_decay = strtof(v, NULL);
    if ((v = fp_cli_opt(argc, argv, "--seed")))
        tc.seed = strtoull(v, NULL, 10);
    int64_t save_every = 0;
    if ((v = fp_cli_opt(argc, argv, "--save-every")))
        save_every = strtoll(v, NULL, 10);
    const char *out_dir = fp_cli_opt(argc, argv, "--out"), *resume = fp_cli_opt(argc, argv, "--resume");
    if (tc.steps < 1 || tc.batch < 1 || tc.accum < 1 || !(tc.lr >= 0)) {
        fprintf(stderr, "fp train: --steps, --batch and --accum must be >= 1 and --lr >= 0\n");
        return 2;
    }

    fp_dtype wdt;
    if (fp_cli_base_dtype("train", argc, argv, &wdt))
        return 2;
    if (wdt != FP_F32 && full) {
        fprintf(stderr, "fp train: --base-dtype %s needs LoRA (full fine-tuning trains f32 weights)\n",
                fp_cli_opt(argc, argv, "--base-dtype"));
        return 2;
    }
    int32_t *tok = NULL;
    int64_t ntok = 0;
    int rc = fp_cli_read_tokens("train", argc, argv, model_dir, &tok, &ntok);
    if (rc)
        return rc;
    fp_ctx *ctx = NULL;
    fp_model *m = NULL;
    fp_trainer *t = NULL;
    int err = fp_ctx_create(&ctx, NULL);
    if (!err)
        err = fp_model_load_dir_as(&m, ctx, model_dir, wdt);
    if (!err && rank_s) {
        fp_lora_config lc = {atoi(rank_s), 0, FP_LORA_ALL, 0};
        lc.alpha = (v = fp_cli_opt(argc, argv, "--lora-alpha")) ? strtof(v, NULL) : 2.0f * (float)lc.rank;
        if ((v = fp_cli_opt(argc, argv, "--lora-targets")))
            err = fp_lora_targets_parse(&lc.targets, v);
        if (!err && (v = fp_cli_opt(argc, argv, "--lora-layers")))
            err = fp_lora_layers_parse(&lc.layers, v, fp_model_cfg(m)->layers);
        if (!err)
            err = fp_model_lora_enable(m, &lc, tc.seed);
        if (!err && (v = fp_cli_opt(argc, argv, "--lora-dropout")))
            err = fp_model_lora_set_dropout(m, strtof(v, NULL), tc.seed);
    }
    fp_plan_bytes pb;
    if (!err) {
        fp_lora_config lc;
        int lora = fp_model_lora_get(m, &lc);
        int64_t B = (tc.seq <= 0 || tc.seq >= ntok - 1) ? 1 : tc.batch;
        int64_t T = (tc.seq <= 0 || tc.seq >= ntok - 1) ? ntok - 1 : tc.seq;
        err = fp_model_plan_bytes(&pb, fp_model_cfg(m), lora ? &lc : NULL, B, T, 1,
                                  tc.optimizer == FP_OPT_ADAMW ? 2 : 0);
        if (!err && !json)
            fprintf(stderr,
                    "fp train: %s, %lld tokens, batch %lld x seq %lld x accum %d; planned device memory %.1f MiB "
                    "(params %.1f, grads %.1f, optimizer %.1f, activations %.1f)\n",
                    lora ? "LoRA" : "full fine-tuning", (long long)ntok, (long long)B, (long long)T, tc.accum,
                    pb.total / 1048576.0, pb.params / 1048576.0, pb.grads / 1048576.0, pb.optimizer / 1048576.0,
                    pb.activations / 1048576.0);
    }
    if (!err)
        err = fp_trainer_create(&t, m, &tc, tok, ntok);
    if (!err && resume)
        err = fp_trainer_load(t, resume);
    double t_sum = 0;
    int64_t tok_sum = 0;
    while (!err && fp_trainer_steps_done(t) < tc.steps) {
        fp_train_stats st;
        err = fp_trainer_step(t, &st);
        if (err)
            break;
        t_sum += st.seconds;
        tok_sum += st.tokens;
        if (json) {
            printf("{\"step\": %lld, \"loss\": %.7g, \"grad_norm\": %.6g, \"lr\": %.6g, \"tokens\": %lld, "
                   "\"seconds\": %.4f}\n",
                   (long long)st.step, st.loss, st.grad_norm, st.lr, (long long)st.tokens, st.seconds);
            fflush(stdout);
        } else {
            double tps = t_sum > 0 ? tok_sum / t_sum : 0;
            double eta = (tc.steps - st.step) * (t_sum / (double)st.step);
            if (fp_cli_tty())
                fprintf(stderr, "\rstep %lld/%lld  loss %.4f  %.0f tok/s  ETA %.0fs   ", (long long)st.step,
                        (long long)tc.steps, st.loss, tps, eta);
            else
                fprintf(stderr, "step %lld/%lld loss %.4f %.0f tok/s ETA %.0fs\n", (long long)st.step,
                        (long long)tc.steps, st.loss, tps, eta);
        }
        if (out_dir && save_every > 0 && st.step % save_every == 0)
            err = fp_trainer_save(t, out_dir);
    }
    if (!json && fp_cli_tty())
        fputc('\n', stderr);
    if (!err && out_dir) {
        err = fp_trainer_save(t, out_dir);
        if (!err)
            err = fp_model_lora_get(m, NULL) ? fp_model_save_adapter(m, out_dir) : fp_model_save_dir(m, out_dir);
    }
    fp_trainer_free(t);
    fp_model_free(m);
    fp_ctx_destroy(ctx);
    free(tok);
    return err ? fp_cli_fail("train", err) : 0;
}
