/* options.c - the registry of every option: type, default, bounds, help, and
 * the augmentation presets. Names and defaults follow DESIGN §6 and the
 * official Barlow Twins code. */
#include "common/internal.h"

#include <string.h>

#define PV BTI_OPT_PER_VIEW
#define BIG 1e15

/* name, type, default, lo, hi, min_len, max_len, choices, flags, help */
const struct bti_option bti_options[] = {
    {"model.arch", BTI_OPT_CHOICE, "resnet50", 0, 0, 0, 0, "resnet18|resnet34|resnet50|resnet|none", 0,
     "encoder: a torchvision ResNet, 'resnet' built from model.block/blocks/widths, or 'none' "
     "(projector only: the input is the host's [N, model.feature_dim] features)"},
    {"model.block", BTI_OPT_CHOICE, "basic", 0, 0, 0, 0, "basic|bottleneck", 0,
     "residual block of the custom 'resnet' arch"},
    {"model.blocks", BTI_OPT_INT_LIST, "2-2-2-2", 1, 64, 1, 8, NULL, 0,
     "blocks per stage of the custom 'resnet' arch"},
    {"model.widths", BTI_OPT_INT_LIST, "64-128-256-512", 1, 8192, 1, 8, NULL, 0,
     "base width per stage of the custom 'resnet' arch (bottleneck output is 4x)"},
    {"model.stem", BTI_OPT_CHOICE, "imagenet", 0, 0, 0, 0, "imagenet|cifar", 0,
     "imagenet: 7x7/2 conv + 3x3/2 max-pool; cifar: 3x3/1 conv, no pool"},
    {"model.feature_dim", BTI_OPT_INT, "0", 0, 1048576, 0, 0, NULL, 0,
     "width of the host's features, the projector's input, with model.arch none (required "
     "there, 0 otherwise)"},
    {"model.in_channels", BTI_OPT_INT, "3", 1, 16, 0, 0, NULL, 0, "input image channels"},
    {"model.zero_init_residual", BTI_OPT_INT, "1", 0, 1, 0, 0, NULL, 0,
     "start each residual branch's last BatchNorm at gamma = 0"},
    {"model.projector", BTI_OPT_INT_LIST, "8192-8192-8192", 1, 65536, 1, 8, NULL, 0,
     "projector layer sizes: Linear-BN-ReLU for all but the last, then Linear"},
    {"model.projector_bias", BTI_OPT_INT, "0", 0, 1, 0, 0, NULL, 0, "bias in the projector's Linear layers"},
    {"model.projector_bn", BTI_OPT_INT, "1", 0, 1, 0, 0, NULL, 0,
     "BatchNorm after the projector's hidden Linear layers"},
    {"seed", BTI_OPT_INT, "0", 0, BIG, 0, 0, NULL, 0, "seed for initialisation and augmentation"},
    {"threads", BTI_OPT_INT, "0", 0, 1024, 0, 0, NULL, 0,
     "worker threads; 0 = BT_NUM_THREADS if set, else all cores"},
    {"cpu.level", BTI_OPT_CHOICE, "auto", 0, 0, 0, 0, "auto|generic|avx2|avx512", 0,
     "instruction set of the kernels; auto = BT_CPU if set, else the best the CPU runs"},

    {"loss.lambda", BTI_OPT_REAL, "0.0051", 0, 1e3, 0, 0, NULL, 0, "weight of the off-diagonal term"},
    {"loss.scale", BTI_OPT_REAL, "1", 0, 1e6, 0, 0, NULL, 0, "factor on the whole loss"},
    {"loss.mode", BTI_OPT_CHOICE, "barlow", 0, 0, 0, 0,
     "barlow|invariance_only|redundancy_only|feature_norm|xent", 0,
     "loss variant (paper Table 5)"},
    {"loss.temperature", BTI_OPT_REAL, "0.1", 1e-4, 1e4, 0, 0, NULL, 0,
     "temperature of the 'xent' variant"},

    {"aug.preset", BTI_OPT_CHOICE, "imagenet", 0, 0, 0, 0, "imagenet|cifar|fmnist", 0,
     "defaults for every aug.* option (imagenet = the paper's)"},
    {"aug.size", BTI_OPT_INT, "224", 1, 4096, 0, 0, NULL, PV, "output side in pixels"},
    {"aug.scale_min", BTI_OPT_REAL, "0.08", 1e-4, 1, 0, 0, NULL, PV, "smallest crop area fraction"},
    {"aug.scale_max", BTI_OPT_REAL, "1", 1e-4, 1, 0, 0, NULL, PV, "largest crop area fraction"},
    {"aug.ratio_min", BTI_OPT_REAL, "0.75", 1e-3, 1e3, 0, 0, NULL, PV, "smallest crop aspect ratio w/h"},
    {"aug.ratio_max", BTI_OPT_REAL, "1.3333333333333333", 1e-3, 1e3, 0, 0, NULL, PV,
     "largest crop aspect ratio w/h"},
    {"aug.interpolation", BTI_OPT_CHOICE, "bicubic", 0, 0, 0, 0, "bicubic|bilinear", PV,
     "resampling of the crop, as PIL computes it"},
    {"aug.flip_p", BTI_OPT_REAL, "0.5", 0, 1, 0, 0, NULL, PV, "probability of a horizontal flip"},
    {"aug.jitter_p", BTI_OPT_REAL, "0.8", 0, 1, 0, 0, NULL, PV, "probability of colour jitter"},
    {"aug.brightness", BTI_OPT_REAL, "0.4", 0, 10, 0, 0, NULL, PV,
     "brightness factor drawn from [max(0, 1-b), 1+b]"},
    {"aug.contrast", BTI_OPT_REAL, "0.4", 0, 10, 0, 0, NULL, PV,
     "contrast factor drawn from [max(0, 1-c), 1+c]"},
    {"aug.saturation", BTI_OPT_REAL, "0.2", 0, 10, 0, 0, NULL, PV,
     "saturation factor drawn from [max(0, 1-s), 1+s]"},
    {"aug.hue", BTI_OPT_REAL, "0.1", 0, 0.5, 0, 0, NULL, PV, "hue shift drawn from [-h, h]"},
    {"aug.gray_p", BTI_OPT_REAL, "0.2", 0, 1, 0, 0, NULL, PV, "probability of grayscale"},
    {"aug.blur_p", BTI_OPT_REAL, "1", 0, 1, 0, 0, NULL, PV,
     "probability of PIL's Gaussian blur (imagenet: view 1 1.0, view 2 0.1)"},
    {"aug.solarize_p", BTI_OPT_REAL, "0", 0, 1, 0, 0, NULL, PV,
     "probability of solarisation (imagenet: view 1 0, view 2 0.2)"},
    {"aug.mean", BTI_OPT_REAL_LIST, "0.485,0.456,0.406", -10, 10, 1, 3, NULL, PV,
     "per-channel mean subtracted after scaling to [0, 1]"},
    {"aug.std", BTI_OPT_REAL_LIST, "0.229,0.224,0.225", 1e-6, 10, 1, 3, NULL, PV,
     "per-channel standard deviation divided by"},

    {"optim.kind", BTI_OPT_CHOICE, "lars", 0, 0, 0, 0, "lars|sgd|adamw", 0, "optimizer of bt_optim"},
    {"optim.lr", BTI_OPT_REAL, "0.2", 0, 1e3, 0, 0, NULL, 0,
     "learning rate of weights (group 0), scaled by batch_size/256"},
    {"optim.lr_bias", BTI_OPT_REAL, "0.0048", 0, 1e3, 0, 0, NULL, 0,
     "learning rate of biases and BN (group 1), scaled by batch_size/256"},
    {"optim.momentum", BTI_OPT_REAL, "0.9", 0, 0.999999, 0, 0, NULL, 0, "momentum (beta1 for adamw)"},
    {"optim.weight_decay", BTI_OPT_REAL, "1e-6", 0, 10, 0, 0, NULL, 0, "weight decay of group 0"},
    {"optim.eta", BTI_OPT_REAL, "0.001", 0, 10, 0, 0, NULL, 0, "LARS trust coefficient"},
    {"optim.exclude_bias_bn", BTI_OPT_INT, "1", 0, 1, 0, 0, NULL, 0,
     "1-dim tensors get no decay and no LARS adaptation"},
    {"optim.batch_size", BTI_OPT_INT, "2048", 1, 1e9, 0, 0, NULL, 0,
     "global batch size; the base rate is batch_size/256 x lr"},
    {"optim.warmup_steps", BTI_OPT_INT, "0", 0, BIG, 0, 0, NULL, 0, "linear warm-up length in steps"},
    {"optim.total_steps", BTI_OPT_INT, "0", 0, BIG, 0, 0, NULL, 0,
     "schedule length in steps; 0 = no cosine decay"},
    {"optim.final_lr_ratio", BTI_OPT_REAL, "0.001", 0, 1, 0, 0, NULL, 0,
     "rate at total_steps as a fraction of the base rate"},
    {"optim.grad_scale", BTI_OPT_REAL, "1", 1e-12, 1e12, 0, 0, NULL, 0,
     "factor on gradients before the update (1/W mimics W official GPUs)"},
    {"optim.schedule", BTI_OPT_CHOICE, "cosine", 0, 0, 0, 0, "cosine|constant", 0,
     "warm-up then cosine decay, or a constant rate"},
    {"optim.lars_variant", BTI_OPT_CHOICE, "official", 0, 0, 0, 0, "official|solo", 0,
     "official: eta*|p|/|g+wd*p|; solo: eta*|p|/(|g|+wd*|p|) with clipping"},
    {"optim.nesterov", BTI_OPT_INT, "0", 0, 1, 0, 0, NULL, 0, "Nesterov momentum for sgd"},
    {"optim.beta2", BTI_OPT_REAL, "0.999", 0, 0.999999999, 0, 0, NULL, 0, "adamw second-moment decay"},
    {"optim.adam_eps", BTI_OPT_REAL, "1e-8", 0, 1, 0, 0, NULL, 0, "adamw denominator epsilon"},
};

const int bti_option_count = (int)(sizeof bti_options / sizeof bti_options[0]);

/* Values that differ from the defaults above, per preset and view (0 = both). */
const struct bti_preset_value bti_presets[] = {
    {"imagenet", 2, "aug.blur_p", "0.1"},
    {"imagenet", 2, "aug.solarize_p", "0.2"},

    {"cifar", 0, "aug.size", "32"},
    {"cifar", 0, "aug.blur_p", "0"},
    {"cifar", 2, "aug.solarize_p", "0.2"},
    {"cifar", 0, "aug.mean", "0.4914,0.4822,0.4465"},
    {"cifar", 0, "aug.std", "0.2470,0.2435,0.2616"},

    {"fmnist", 0, "aug.size", "28"},
    {"fmnist", 0, "aug.scale_min", "0.2"},
    {"fmnist", 0, "aug.saturation", "0"},
    {"fmnist", 0, "aug.hue", "0"},
    {"fmnist", 0, "aug.gray_p", "0"},
    {"fmnist", 0, "aug.blur_p", "0"},
    {"fmnist", 0, "aug.solarize_p", "0"},
    {"fmnist", 0, "aug.mean", "0.2860"},
    {"fmnist", 0, "aug.std", "0.3530"},
};

const int bti_preset_count = (int)(sizeof bti_presets / sizeof bti_presets[0]);

int bti_option_find(const char *name)
{
    int i;
    for (i = 0; i < bti_option_count; i++)
        if (strcmp(bti_options[i].name, name) == 0)
            return i;
    return -1;
}
