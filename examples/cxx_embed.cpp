// cxx_embed.cpp - using libbarlow from C++ through barlow.hpp: RAII handles,
// exceptions at the boundary, a model built from whatever architecture a
// checkpoint records, eval-mode embeddings of a batch of images and one
// training step (forward, loss, backward) on their augmented views.
//
//   c++ -std=c++11 cxx_embed.cpp $(pkg-config --cflags --libs barlow) -o cxx_embed
//   ./cxx_embed [checkpoint.safetensors]
//
// With a checkpoint (train_loop's, `barlow pretrain`'s, any written by
// bt_checkpoint_save), the model options and the evaluation view come from the
// file itself. Without one, a small built-in model is used, randomly initialised.
#include <barlow.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

double row_norm(const float *row, int64_t n)
{
    double s = 0;
    for (int64_t k = 0; k < n; k++)
        s += double(row[k]) * row[k];
    return std::sqrt(s);
}

} // namespace

int main(int argc, char **argv)
try {
    const std::string path = argc > 1 ? argv[1] : "";
    barlow::config cfg = barlow::config::create();
    if (!path.empty()) {
        cfg.read_checkpoint(path); // model.* and the evaluation view, as saved
    } else {
        cfg.set("model.arch", "resnet").set("model.blocks", "1-1-1").set("model.widths", "16-32-64");
        cfg.set("model.stem", "cifar").set("model.in_channels", "1").set("model.projector", "512-512-512");
        cfg.set("aug.preset", "fmnist");
    }
    std::printf("%s:", path.empty() ? "no checkpoint, built-in model" : path.c_str());
    for (const barlow::option &o : barlow::options()) // every model.* option: what the model is
        if (std::string(o.name).compare(0, 6, "model.") == 0)
            std::printf(" %s=%s", o.name, cfg.get(o.name).c_str());
    std::printf(" aug.view1.size=%s", cfg.get("aug.view1.size").c_str());
    std::printf("\n");

    // The file records the evaluation view (aug.view1.*), not the second training view:
    // give both views its size and normalisation, so that the training step below fits.
    for (const char *k : {"size", "mean", "std"})
        cfg.set(std::string("aug.view2.") + k, cfg.get(std::string("aug.view1.") + k));

    barlow::model model = barlow::model::create(cfg);
    barlow::augment aug = barlow::augment::create(cfg);
    barlow::loss loss = barlow::loss::create(cfg);
    if (!path.empty())
        barlow::checkpoint::load(path, model); // weights only: no optimizer, no RNG state
    const int64_t fdim = model.feature_dim(), edim = model.embed_dim();
    std::printf("model: %d tensors, %lld-d features, %lld-d embeddings%s\n", model.tensor_count(),
                static_cast<long long>(fdim), static_cast<long long>(edim),
                path.empty() ? " (random init)" : "");

    // Eight 28x28 host images with the model's channel count: a gradient with a bright bar.
    const int n = 8, side = 28;
    const int ch = std::stoi(cfg.get("model.in_channels"));
    std::vector<std::vector<uint8_t> > pixels(n, std::vector<uint8_t>(side * side * ch));
    std::vector<const uint8_t *> images(n);
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < side * side * ch; p++) {
            int y = p / ch / side, x = p / ch % side;
            pixels[i][p] = static_cast<uint8_t>(x * 8 + (y == 3 * i ? 40 : 0) + 10 * (p % ch));
        }
        images[i] = pixels[i].data();
    }

    // Eval-mode features of the images, through the evaluation transform.
    const int64_t s = aug.output_size(0);
    barlow::tensor x = barlow::tensor::create({n, ch, s, s});
    barlow::tensor f = barlow::tensor::create({n, fdim});
    aug.eval(images, side, side, ch, x);
    model.encode(x, f);
    for (int i = 0; i < n; i++)
        std::printf("image %d: %lld-d feature, norm %.4f\n", i, static_cast<long long>(fdim),
                    row_norm(f.data() + i * fdim, fdim));

    // One training step's forward and backward on two augmented views (nothing is saved).
    barlow::tensor v1 = barlow::tensor::create({n, ch, s, s}), v2 = barlow::tensor::create({n, ch, s, s});
    barlow::tensor z1 = barlow::tensor::create({n, edim}), z2 = barlow::tensor::create({n, edim});
    barlow::tensor dz1 = barlow::tensor::create({n, edim}), dz2 = barlow::tensor::create({n, edim});
    aug.views(images, side, side, ch, {v1, v2});
    model.zero_grad();
    model.forward({v1, v2}, {z1, z2});
    const double value = loss.forward(z1, z2);
    loss.backward(dz1, dz2);
    model.backward({dz1, dz2});
    const barlow::loss_terms t = loss.terms();
    std::printf("training step on %d images x 2 views: loss %.4f (on-diag %.4f, off-diag %.4f)\n", n, value,
                t.on_diag, t.off_diag);
    return 0;
} catch (const barlow::error &e) {
    std::fprintf(stderr, "cxx_embed: %s\n", e.what());
    return 2;
} catch (const std::exception &e) {
    std::fprintf(stderr, "cxx_embed: %s\n", e.what());
    return 2;
}
