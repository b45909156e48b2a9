// cxx_embed.cpp - using libbarlow from C++: RAII handles, exceptions at the
// boundary, and eval-mode embeddings of a batch of images.
//
//   c++ -std=c++11 cxx_embed.cpp $(pkg-config --cflags --libs barlow) -o cxx_embed
//   ./cxx_embed [checkpoint.safetensors]
#include <barlow.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// Turn a failed status into an exception carrying libbarlow's message.
void check(bt_status st, const char *what)
{
    if (st != BT_OK)
        throw std::runtime_error(std::string(what) + ": " + bt_last_error());
}

struct ConfigFree { void operator()(bt_config *c) const { bt_config_free(c); } };
struct ModelFree { void operator()(bt_model *m) const { bt_model_free(m); } };
struct AugFree { void operator()(bt_augment *a) const { bt_augment_free(a); } };
struct TensorFree { void operator()(bt_tensor *t) const { bt_tensor_free(t); } };

using Config = std::unique_ptr<bt_config, ConfigFree>;
using Model = std::unique_ptr<bt_model, ModelFree>;
using Augment = std::unique_ptr<bt_augment, AugFree>;
using Tensor = std::unique_ptr<bt_tensor, TensorFree>;

Tensor make_tensor(std::vector<int64_t> shape)
{
    bt_tensor *t = nullptr;
    check(bt_tensor_create(&t, static_cast<int32_t>(shape.size()), shape.data()), "tensor");
    return Tensor(t);
}

} // namespace

int main(int argc, char **argv)
try {
    bt_config *raw = nullptr;
    check(bt_config_create(&raw), "config");
    Config cfg(raw);
    const char *opts[][2] = {{"model.arch", "resnet"},   {"model.blocks", "1-1-1"},
                             {"model.widths", "16-32-64"}, {"model.stem", "cifar"},
                             {"model.in_channels", "1"},  {"model.projector", "512-512-512"},
                             {"aug.preset", "fmnist"}};
    for (auto &o : opts)
        check(bt_config_set(cfg.get(), o[0], o[1]), o[0]);

    bt_model *m = nullptr;
    check(bt_model_create(&m, cfg.get()), "model");
    Model model(m);
    if (argc > 1)
        check(bt_checkpoint_load(argv[1], model.get(), nullptr, nullptr), argv[1]);

    bt_augment *a = nullptr;
    check(bt_augment_create(&a, cfg.get()), "augment");
    Augment aug(a);

    // Eight 28x28 grey images from the host: a gradient with a bright bar.
    const int n = 8, side = 28;
    std::vector<std::vector<uint8_t>> pixels(n, std::vector<uint8_t>(side * side));
    std::vector<const uint8_t *> images(n);
    std::vector<int32_t> heights(n, side), widths(n, side);
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < side * side; p++)
            pixels[i][p] = static_cast<uint8_t>((p % side) * 8 + ((p / side) == 3 * i ? 40 : 0));
        images[i] = pixels[i].data();
    }

    Tensor x = make_tensor({n, 1, side, side});
    Tensor f = make_tensor({n, bt_model_feature_dim(model.get())});
    check(bt_augment_eval(aug.get(), n, images.data(), heights.data(), widths.data(), 1, x.get()),
          "eval transform");
    check(bt_model_encode(model.get(), x.get(), f.get()), "encode");

    const float *d = bt_tensor_data(f.get());
    const int64_t dim = bt_model_feature_dim(model.get());
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int64_t k = 0; k < dim; k++)
            s += double(d[i * dim + k]) * d[i * dim + k];
        std::printf("image %d: %lld-d feature, norm %.4f\n", i, static_cast<long long>(dim),
                    std::sqrt(s));
    }
    return 0;
} catch (const std::exception &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
}
