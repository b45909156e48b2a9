// test_barlow.cpp - the C++ wrapper (include/barlow.hpp): every class, the
// move semantics, the status-returning form, and (when exceptions are on) the
// throwing form with barlow::error. Built by tests/cxx/run.sh as C++11 and
// C++17, with and without exceptions; prints "cxx: N passed, 0 failed".
#include <barlow.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <unistd.h>

namespace {

int passed = 0, failed = 0;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            passed++;                                                                              \
        } else {                                                                                   \
            failed++;                                                                              \
            std::fprintf(stderr, "%s:%d: FAIL %s (last error: %s)\n", __FILE__, __LINE__, #cond,    \
                         bt_last_error());                                                         \
        }                                                                                          \
    } while (0)

// A try_ call that must succeed.
#define OK(call) CHECK((call).ok())

bool contains(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

bool same_data(barlow::const_tensor_ref a, barlow::const_tensor_ref b)
{
    return a.numel() == b.numel() && a.numel() > 0 &&
           std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * sizeof(float)) == 0;
}

void fill(barlow::tensor_ref t, float base)
{
    for (int64_t i = 0; i < t.numel(); i++)
        t.data()[i] = base + 0.37f * static_cast<float>(i % 11) - 0.1f * static_cast<float>(i % 3);
}

double sum_abs(barlow::const_tensor_ref t)
{
    double s = 0;
    for (int64_t i = 0; i < t.numel(); i++)
        s += std::fabs(t.data()[i]);
    return s;
}

std::string tmp_path(const char *name)
{
    const char *dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/cxx_test_" + std::to_string(getpid()) + "_" + name;
}

// ---- compile-time contract: move-only owners, explicit bool --------------------------

template <typename T>
struct owner_traits {
    static const bool value = !std::is_copy_constructible<T>::value && !std::is_copy_assignable<T>::value &&
                              std::is_nothrow_move_constructible<T>::value &&
                              std::is_nothrow_move_assignable<T>::value &&
                              std::is_nothrow_default_constructible<T>::value &&
                              std::is_constructible<bool, T>::value && !std::is_convertible<T, bool>::value;
};
static_assert(owner_traits<barlow::tensor>::value, "tensor is a move-only owner");
static_assert(owner_traits<barlow::config>::value, "config is a move-only owner");
static_assert(owner_traits<barlow::layer>::value, "layer is a move-only owner");
static_assert(owner_traits<barlow::model>::value, "model is a move-only owner");
static_assert(owner_traits<barlow::loss>::value, "loss is a move-only owner");
static_assert(owner_traits<barlow::xent>::value, "xent is a move-only owner");
static_assert(owner_traits<barlow::augment>::value, "augment is a move-only owner");
static_assert(owner_traits<barlow::optim>::value, "optim is a move-only owner");
static_assert(owner_traits<barlow::comm>::value, "comm is a move-only owner");
static_assert(std::is_trivially_copyable<barlow::tensor_ref>::value, "tensor_ref is a plain pointer");
static_assert(std::is_trivially_copyable<barlow::result>::value, "result copies freely");
static_assert(std::is_convertible<barlow::tensor &, barlow::const_tensor_ref>::value, "owner -> ref");
static_assert(!std::is_convertible<barlow::const_tensor_ref, barlow::tensor_ref>::value, "no const loss");

// Whether the throwing factory config::create() exists: only with exceptions.
template <typename T>
auto has_throwing_create(int) -> decltype(T::create(), std::true_type());
template <typename T>
std::false_type has_throwing_create(...);
static_assert(decltype(has_throwing_create<barlow::config>(0))::value == (BARLOW_EXCEPTIONS == 1),
              "the throwing API is compiled in exactly when exceptions are on");

// ---- helpers making each handle through the status API -----------------------------

barlow::config small_config()
{
    barlow::config c;
    OK(barlow::config::try_create(c));
    const char *opts[][2] = {{"model.arch", "resnet"},  {"model.blocks", "1-1"},      {"model.widths", "4-8"},
                             {"model.stem", "cifar"},   {"model.in_channels", "1"},  {"model.projector", "16-16"},
                             {"aug.preset", "fmnist"},  {"aug.size", "8"},           {"optim.kind", "sgd"},
                             {"optim.batch_size", "4"}, {"threads", "1"}};
    for (const auto &o : opts)
        OK(c.try_set(o[0], o[1]));
    return c;
}

barlow::tensor make(const std::vector<int64_t> &shape)
{
    barlow::tensor t;
    OK(barlow::tensor::try_create(t, shape));
    return t;
}

// ---- version, status text, result -------------------------------------------------

void test_basics()
{
    CHECK(barlow::version_number() == BT_VERSION_NUMBER);
    CHECK(std::string(barlow::version_string()) == bt_version_string());
    CHECK(contains(barlow::build_info(), barlow::version_string()));
    CHECK(std::string(barlow::status_name(BT_E_SHAPE)) == "BT_E_SHAPE");
    CHECK(std::string(barlow::status_name(BT_OK)) == "BT_OK");
    CHECK(std::string(barlow::status_name(999)) == "BT_E_UNKNOWN");
    CHECK(std::string(barlow::status_string(BT_E_SHAPE)) == bt_status_string(BT_E_SHAPE));
    barlow::result r;
    CHECK(r.ok() && r.status() == BT_OK && std::string(r.message()).empty());
    CHECK(barlow::result::from(BT_OK).ok());
    barlow::result e(BT_E_IO, "disk on fire");
    CHECK(!e.ok() && e.status() == BT_E_IO && std::string(e.name()) == "BT_E_IO");
    CHECK(e.text() == std::string("BT_E_IO (") + bt_status_string(BT_E_IO) + "): disk on fire");
    CHECK(barlow::max_views == 8);
}

// ---- tensors -------------------------------------------------------------------------

void test_tensor()
{
    barlow::tensor t = make({2, 3});
    CHECK(static_cast<bool>(t));
    CHECK(t.ndim() == 2 && t.dim(0) == 2 && t.dim(-1) == 3 && t.numel() == 6);
    std::vector<int64_t> shape;
    OK(t.try_shape(shape));
    CHECK(shape == std::vector<int64_t>({2, 3}));
    CHECK(t.data() != nullptr && t.data()[5] == 0.0f);
    t.data()[5] = 4.5f;

    // a bad shape: the library's status and message, and `out` keeps its tensor
    bt_tensor *before = t.get();
    barlow::result r = barlow::tensor::try_create(t, {2, 0});
    CHECK(r.status() == BT_E_INVALID_ARG);
    CHECK(std::string(r.message()) == bt_last_error() && contains(r.message(), "shape[1]"));
    CHECK(t.get() == before && t.data()[5] == 4.5f);

    // pointer + length forms
    const int64_t s4[] = {2, 1, 3, 3};
    barlow::tensor u;
    OK(barlow::tensor::try_create(u, s4, 4));
    CHECK(u.ndim() == 4 && u.numel() == 18);
    std::vector<float> host(6, 1.5f);
    barlow::tensor w;
    OK(barlow::tensor::try_wrap(w, host.data(), {3, 2}));
    CHECK(w.data() == host.data() && w.numel() == 6);
    w.data()[0] = 7.0f;
    CHECK(host[0] == 7.0f);
    const int64_t s1[] = {6};
    OK(barlow::tensor::try_wrap(w, host.data(), s1, 1)); // the first wrap is freed, host is not
    CHECK(w.ndim() == 1 && host[0] == 7.0f);
    CHECK(barlow::tensor::try_wrap(w, nullptr, s1, 1).status() == BT_E_MISUSE);

    // borrowed refs
    barlow::tensor_ref ref = t;
    barlow::const_tensor_ref cref = t, cref2 = ref;
    CHECK(ref.get() == t.get() && cref.get() == t.get() && cref2.get() == t.get());
    CHECK(ref.data() == t.data() && cref.data() == t.data() && cref.numel() == 6);
    OK(cref.try_shape(shape));
    CHECK(shape.size() == 2);
    CHECK(!barlow::tensor_ref() && !barlow::const_tensor_ref());

    // an empty owner gives what the C calls give for NULL
    barlow::tensor empty;
    CHECK(!empty && empty.get() == nullptr && empty.ndim() == -1 && empty.numel() == -1 && !empty.data());
    CHECK(empty.try_shape(shape).status() == BT_E_MISUSE && shape.size() == 2);
}

// ---- move semantics, generic over the owners -------------------------------------------

// live(raw) says whether the library still knows the handle (its registry answers
// BT_E_MISUSE for a freed one).
template <typename T, typename Raw>
void move_semantics(T a, T b, bool (*live)(Raw *), const char *what)
{
    const int failed_before = failed;
    Raw *ra = a.get(), *rb = b.get();
    CHECK(ra && rb && ra != rb && live(ra) && live(rb));
    T c(std::move(a)); // move construction leaves the source empty
    CHECK(!a && a.get() == nullptr && c.get() == ra);
    c = std::move(b); // move assignment frees what c held
    CHECK(!b && c.get() == rb && !live(ra) && live(rb));
    T &alias = c;
    c = std::move(alias); // self-move keeps the handle
    CHECK(c.get() == rb && live(rb));
    Raw *raw = c.release(); // release: the caller owns it
    CHECK(!c && raw == rb && live(rb));
    T d(raw); // adopt it again
    CHECK(d.get() == rb);
    d.reset(); // reset frees
    CHECK(!d && !live(rb));
    if (failed != failed_before)
        std::fprintf(stderr, "  (the failures above are barlow::%s's)\n", what);
}

bool tensor_live(bt_tensor *t) { return bt_tensor_ndim(t) >= 0; }
bool config_live(bt_config *c) { return bt_config_is_set(c, "seed") >= 0; }
bool layer_live(bt_layer *l) { return bt_layer_tensor_count(l) >= 0; }
bool model_live(bt_model *m) { return bt_model_tensor_count(m) >= 0; }
bool loss_live(bt_loss *l) { return bt_loss_path(l) >= 0; }
bool augment_live(bt_augment *a) { return bt_augment_output_size(a, 0) >= 0; }
bool optim_live(bt_optim *o) { return bt_optim_step_count(o) >= 0; }
bool xent_live(bt_xent *x)
{
    bt_tensor *d = nullptr;
    const int64_t s[] = {2, 2};
    bt_tensor_create(&d, 2, s);
    bt_status st = bt_xent_backward(x, d); // BT_E_STATE when live (no forward), BT_E_MISUSE when not
    bt_tensor_free(d);
    return st == BT_E_STATE;
}

void test_moves()
{
    barlow::config cfg = small_config();
    move_semantics(make({2}), make({3}), tensor_live, "tensor");
    move_semantics(small_config(), small_config(), config_live, "config");
    barlow::layer l1, l2;
    OK(barlow::layer::try_relu(l1));
    OK(barlow::layer::try_linear(l2, 2, 2));
    move_semantics(std::move(l1), std::move(l2), layer_live, "layer");
    barlow::model m1, m2;
    OK(barlow::model::try_create(m1, cfg));
    OK(barlow::model::try_create(m2, cfg));
    move_semantics(std::move(m1), std::move(m2), model_live, "model");
    barlow::loss s1, s2;
    OK(barlow::loss::try_create(s1, cfg));
    OK(barlow::loss::try_create(s2));
    move_semantics(std::move(s1), std::move(s2), loss_live, "loss");
    barlow::xent x1, x2;
    OK(barlow::xent::try_create(x1, cfg));
    OK(barlow::xent::try_create(x2));
    move_semantics(std::move(x1), std::move(x2), xent_live, "xent");
    barlow::augment a1, a2;
    OK(barlow::augment::try_create(a1, cfg));
    OK(barlow::augment::try_create(a2));
    move_semantics(std::move(a1), std::move(a2), augment_live, "augment");
    barlow::optim o1, o2;
    OK(barlow::optim::try_create(o1, cfg));
    OK(barlow::optim::try_create(o2));
    move_semantics(std::move(o1), std::move(o2), optim_live, "optim");

    // a moved model keeps its handle, so an optimizer holding its tensors stays valid
    barlow::model m;
    barlow::optim o;
    OK(barlow::model::try_create(m, cfg));
    OK(barlow::optim::try_create(o, cfg));
    OK(o.try_add_model(m));
    std::vector<barlow::model> models;
    models.push_back(std::move(m));
    OK(o.try_step());
    CHECK(o.step_count() == 1 && models[0].tensor_count() > 0);
}

// ---- config ----------------------------------------------------------------------------

void test_config()
{
    barlow::config c;
    CHECK(!c);
    OK(barlow::config::try_create(c));
    CHECK(static_cast<bool>(c) && c.get() != nullptr);
    std::string v;
    OK(c.try_get("loss.lambda", v));
    CHECK(v == "0.0051");
    bool set = true;
    OK(c.try_is_set("loss.lambda", set));
    CHECK(!set);
    OK(c.try_set("loss.lambda", "0.004"));
    OK(c.try_get("loss.lambda", v));
    CHECK(v == "0.004");
    OK(c.try_is_set("loss.lambda", set));
    CHECK(set);

    // a bad value: BT_E_INVALID_ARG with the library's message, the value unchanged
    barlow::result r = c.try_set("loss.lambda", "lots");
    CHECK(r.status() == BT_E_INVALID_ARG && contains(r.message(), "loss.lambda") &&
          std::string(r.message()) == bt_last_error());
    OK(c.try_get("loss.lambda", v));
    CHECK(v == "0.004");
    CHECK(c.try_set("no.such", "1").status() == BT_E_UNSUPPORTED);
    CHECK(c.try_get("no.such", v).status() == BT_E_UNSUPPORTED && v == "0.004");
    CHECK(c.try_is_set("no.such", set).status() == BT_E_UNSUPPORTED);
    OK(c.try_restore_default("loss.lambda"));
    OK(c.try_get("loss.lambda", v));
    CHECK(v == "0.0051");
    OK(c.try_is_set("loss.lambda", set));
    CHECK(!set);
    // per-view names, list values, read-only build keys of any length
    OK(c.try_set("aug.view2.size", "40"));
    OK(c.try_get("aug.view2.size", v));
    CHECK(v == "40");
    OK(c.try_get("build.version", v));
    CHECK(v == barlow::version_string());
    OK(c.try_get("build.blas_config", v));
    CHECK(!v.empty());
    CHECK(c.try_set("build.version", "9").status() == BT_E_INVALID_ARG);
    barlow::config none;
    CHECK(none.try_get("seed", v).status() == BT_E_MISUSE);
    CHECK(none.try_is_set("seed", set).status() == BT_E_MISUSE);

    // option iteration, three ways
    int32_t count = 0;
    bool saw_lambda = false;
    for (const barlow::option &o : barlow::options()) {
        count++;
        if (std::string(o.name) == "loss.lambda")
            saw_lambda = std::string(o.type) == "real" && std::string(o.default_value) == "0.0051" &&
                         *o.description != '\0' && *o.range != '\0';
    }
    CHECK(count == bt_config_option_count() && count == barlow::config::option_count() && count > 20);
    CHECK(saw_lambda);
    CHECK(barlow::config::options().size() == count);
    CHECK(std::string(barlow::options()[0].name) == barlow::option_list::at(0).name);
    CHECK(std::distance(barlow::options().begin(), barlow::options().end()) == count);
    barlow::option o = {nullptr, nullptr, nullptr, nullptr, nullptr};
    OK(barlow::config::try_option(0, o));
    CHECK(o.name && std::string(o.name) == barlow::options()[0].name);
    CHECK(barlow::config::try_option(count, o).status() == BT_E_INVALID_ARG);
    CHECK(std::string(barlow::option_list::at(count).name).empty());
}

// ---- layers ----------------------------------------------------------------------------

void test_layers()
{
    barlow::layer lin;
    OK(barlow::layer::try_linear(lin, 4, 3));
    CHECK(lin.tensor_count() == 2);
    std::vector<barlow::named_tensor> ts;
    OK(lin.try_tensors(ts));
    CHECK(ts.size() == 2 && std::string(ts[0].name) == "weight" && std::string(ts[1].name) == "bias");
    CHECK(ts[0].value.dim(0) == 3 && ts[0].value.dim(1) == 4 && ts[0].grad && ts[1].grad.numel() == 3);
    barlow::named_tensor nt = {nullptr, barlow::tensor_ref(), barlow::tensor_ref()};
    OK(lin.try_tensor_at(1, nt));
    CHECK(std::string(nt.name) == "bias" && nt.value.get() == ts[1].value.get());
    CHECK(lin.try_tensor_at(2, nt).status() == BT_E_INVALID_ARG && std::string(nt.name) == "bias");

    std::vector<int64_t> out;
    OK(lin.try_output_shape({5, 4}, out));
    CHECK(out == std::vector<int64_t>({5, 3}));
    const int64_t in_shape[] = {7, 4};
    OK(lin.try_output_shape(in_shape, 2, out));
    CHECK(out == std::vector<int64_t>({7, 3}));
    CHECK(lin.try_output_shape({5, 6}, out).status() == BT_E_SHAPE && out[0] == 7);

    barlow::tensor x = make({5, 4}), y = make({5, 3}), dy = make({5, 3}), dx = make({5, 4}), dx2 = make({5, 4});
    fill(x, 0.5f);
    fill(dy, -0.25f);
    OK(lin.try_forward(x, y));
    OK(lin.try_backward(dy, dx));
    CHECK(sum_abs(dx) > 0 && sum_abs(ts[0].grad) > 0);

    // a bad output shape: BT_E_SHAPE, the library's message, nothing changed
    barlow::tensor bad = make({5, 2});
    fill(bad, 3.0f);
    barlow::tensor bad_copy = make({5, 2});
    std::memcpy(bad_copy.data(), bad.data(), 10 * sizeof(float));
    barlow::result r = lin.try_forward(x, bad);
    CHECK(r.status() == BT_E_SHAPE && std::string(r.message()) == bt_last_error() && *r.message());
    CHECK(same_data(bad, bad_copy));
    OK(lin.try_backward(dy, dx2)); // the previous forward is still the one backward uses
    CHECK(same_data(dx, dx2));
    OK(lin.try_backward(dy)); // dx may be left out
    OK(lin.try_zero_grad());
    CHECK(sum_abs(ts[0].grad) == 0 && sum_abs(ts[1].grad) == 0);
    OK(lin.try_set_threads(1));
    CHECK(lin.try_set_threads(-1).status() == BT_E_INVALID_ARG);
    barlow::tensor w0 = make({3, 4});
    std::memcpy(w0.data(), ts[0].value.data(), 12 * sizeof(float));
    OK(lin.try_reset_parameters(7));
    CHECK(!same_data(w0, ts[0].value));

    barlow::layer conv, bn, relu, pool, avg;
    OK(barlow::layer::try_conv2d(conv, 1, 2, 3, 1, 1, false));
    CHECK(conv.tensor_count() == 1);
    OK(conv.try_output_shape({2, 1, 6, 6}, out));
    CHECK(out == std::vector<int64_t>({2, 2, 6, 6}));
    OK(barlow::layer::try_batchnorm(bn, 2));
    CHECK(bn.tensor_count() == 5);
    OK(bn.try_tensors(ts));
    CHECK(std::string(ts[2].name) == "running_mean" && !ts[2].grad && ts[0].grad);
    OK(barlow::layer::try_relu(relu));
    CHECK(relu.tensor_count() == 0);
    OK(barlow::layer::try_maxpool2d(pool, 2, 2));
    OK(pool.try_output_shape({2, 2, 6, 6}, out));
    CHECK(out == std::vector<int64_t>({2, 2, 3, 3}));
    OK(barlow::layer::try_avgpool(avg));
    OK(avg.try_output_shape({2, 2, 3, 3}, out));
    CHECK(out == std::vector<int64_t>({2, 2}));
    barlow::layer none;
    CHECK(barlow::layer::try_conv2d(none, 0, 2, 3).status() == BT_E_INVALID_ARG && !none);
    CHECK(none.tensor_count() == -1 && none.try_zero_grad().status() == BT_E_MISUSE);

    // a conv -> bn -> relu -> pool -> avg chain, forward and backward
    barlow::tensor a0 = make({2, 1, 6, 6}), a1 = make({2, 2, 6, 6}), a2 = make({2, 2, 6, 6});
    barlow::tensor a3 = make({2, 2, 3, 3}), a4 = make({2, 2}), g4 = make({2, 2}), g3 = make({2, 2, 3, 3});
    fill(a0, 0.1f);
    fill(g4, 1.0f);
    OK(conv.try_forward(a0, a1));
    OK(bn.try_forward(a1, a2, true));
    OK(relu.try_forward(a2, a2));
    OK(pool.try_forward(a2, a3));
    OK(avg.try_forward(a3, a4));
    OK(avg.try_backward(g4, g3));
    CHECK(sum_abs(g3) > 0);
    OK(bn.try_forward(a1, a2, false)); // eval mode
}

// ---- fine-tuning: the backbone alone, and a projector-only model ---------------------------

void test_backbone_and_projector_only()
{
    barlow::config cfg = small_config();
    barlow::model m;
    OK(barlow::model::try_create(m, cfg));
    barlow::tensor x1 = make({4, 1, 6, 6}), x2 = make({4, 1, 6, 6});
    for (int64_t i = 0; i < x1.numel(); i++) {
        x1.data()[i] = static_cast<float>((i * 37) % 11) * 0.1f - 0.5f;
        x2.data()[i] = static_cast<float>((i * 53) % 13) * 0.1f - 0.6f;
    }
    barlow::tensor f1 = make({4, 8}), f2 = make({4, 8}), d1 = make({4, 8}), d2 = make({4, 8});
    for (int64_t i = 0; i < d1.numel(); i++)
        d1.data()[i] = d2.data()[i] = 0.1f * static_cast<float>(i % 5) - 0.2f;
    barlow::tensor dx1 = make({4, 1, 6, 6}), dx2 = make({4, 1, 6, 6});
    OK(m.try_forward_backbone({x1, x2}, {f1, f2}));
    CHECK(sum_abs(f1) > 0);
    OK(m.try_backward_backbone({d1, d2}, {dx1, dx2}));
    CHECK(sum_abs(dx1) > 0 && sum_abs(dx2) > 0);
    CHECK(m.try_backward_backbone({d1, d2}).status() == BT_E_STATE); // one backward per forward
    OK(m.try_forward_backbone({x1, x2}, {f1, f2}));
    barlow::result r = m.try_backward_backbone({d1, d2}, {dx1});
    CHECK(r.status() == BT_E_INVALID_ARG && contains(r.message(), "different lengths"));
    OK(m.try_backward_backbone({d1, d2})); // dx left out
    CHECK(m.try_input_grad(0, dx1).status() == BT_E_UNSUPPORTED);

    barlow::config c2;
    OK(barlow::config::try_create(c2));
    OK(c2.try_set("model.arch", "none"));
    barlow::model bad;
    r = barlow::model::try_create(bad, c2);
    CHECK(r.status() == BT_E_INVALID_ARG && contains(r.message(), "model.feature_dim"));
    OK(c2.try_set("model.feature_dim", "8"));
    OK(c2.try_set("model.projector", "16-16"));
    OK(c2.try_set("threads", "1"));
    barlow::model p;
    OK(barlow::model::try_create(p, c2));
    CHECK(p.feature_dim() == 8 && p.embed_dim() == 16);
    barlow::tensor z1 = make({4, 16}), z2 = make({4, 16}), g = make({4, 8});
    OK(p.try_forward({f1, f2}, {z1, z2}));
    OK(p.try_backward({z1, z2}));
    OK(p.try_input_grad(1, g));
    CHECK(sum_abs(g) > 0);
}

// ---- model, loss, optimizer: one training step --------------------------------------------

void test_model_loss_optim()
{
    barlow::config cfg = small_config();
    barlow::model m;
    OK(barlow::model::try_create(m, cfg));
    CHECK(m.feature_dim() == 8 && m.embed_dim() == 16 && m.tensor_count() > 10);
    std::vector<barlow::named_tensor> ts;
    OK(m.try_tensors(ts));
    CHECK(static_cast<int32_t>(ts.size()) == m.tensor_count() && std::string(ts[0].name) == "backbone.conv1.weight");
    barlow::named_tensor nt = {nullptr, barlow::tensor_ref(), barlow::tensor_ref()};
    OK(m.try_tensor_at(0, nt));
    CHECK(nt.value.get() == ts[0].value.get());
    CHECK(m.try_tensor_at(-1, nt).status() == BT_E_INVALID_ARG);
    std::size_t bytes = 0;
    OK(m.try_workspace_bytes(2, {4, 1, 8, 8}, bytes));
    CHECK(bytes > 0);
    const int64_t wshape[] = {4, 1, 8, 8};
    std::size_t bytes2 = 0;
    OK(m.try_workspace_bytes(2, wshape, 4, bytes2));
    CHECK(bytes2 == bytes);
    CHECK(m.try_workspace_bytes(2, {4, 3, 8, 8}, bytes2).status() == BT_E_INVALID_ARG && bytes2 == bytes);
    OK(m.try_set_threads(1));

    barlow::tensor x1 = make({4, 1, 8, 8}), x2 = make({4, 1, 8, 8});
    barlow::tensor z1 = make({4, 16}), z2 = make({4, 16}), dz1 = make({4, 16}), dz2 = make({4, 16});
    fill(x1, 0.2f);
    fill(x2, -0.3f);
    OK(m.try_zero_grad());
    OK(m.try_forward({x1, x2}, {z1, z2})); // braced lists
    barlow::const_tensor_ref f;
    OK(m.try_features(1, f));
    CHECK(f.dim(0) == 4 && f.dim(1) == 8);
    CHECK(m.try_features(2, f).status() == BT_E_INVALID_ARG);

    barlow::loss loss;
    OK(barlow::loss::try_create(loss, cfg));
    CHECK(loss.path() == BT_LOSS_PATH_AUTO);
    double value = -1;
    OK(loss.try_forward(z1, z2, value));
    CHECK(value > 0 && loss.path() == BT_LOSS_PATH_GRAM); // D = 16 > N = 4
    barlow::loss_terms t = {-1, -1};
    OK(loss.try_terms(t));
    CHECK(t.on_diag >= 0 && t.off_diag >= 0);
    OK(loss.try_backward(dz1, dz2));
    CHECK(sum_abs(dz1) > 0);
    barlow::tensor corr = make({3, 3});
    OK(loss.try_correlation(corr));
    CHECK(sum_abs(corr) > 0);
    OK(loss.try_set_path(BT_LOSS_PATH_DXD));
    double value2 = -1;
    OK(loss.try_forward(z1, z2, value2));
    CHECK(loss.path() == BT_LOSS_PATH_DXD && std::fabs(value2 - value) < 1e-6 * std::fabs(value) + 1e-9);
    CHECK(loss.try_set_path(7).status() == BT_E_INVALID_ARG);
    barlow::tensor zbad = make({4, 8});
    double kept = value2;
    barlow::result r = loss.try_forward(z1, zbad, kept);
    CHECK(r.status() == BT_E_SHAPE && kept == value2 && std::string(r.message()) == bt_last_error());

    std::vector<barlow::tensor> dzs;
    dzs.push_back(std::move(dz1));
    dzs.push_back(std::move(dz2));
    OK(m.try_backward(dzs)); // a vector of owners
    CHECK(sum_abs(ts[0].grad) > 0);
    CHECK(m.try_backward(dzs).status() == BT_E_STATE); // one backward per forward

    barlow::optim o;
    OK(barlow::optim::try_create(o, cfg));
    OK(o.try_add_model(m));
    CHECK(o.step_count() == 0 && o.lr(0) > 0 && o.lr(1) > 0 && o.lr(2) < 0);
    barlow::tensor w0 = make({ts[0].value.dim(0), ts[0].value.dim(1), ts[0].value.dim(2), ts[0].value.dim(3)});
    std::memcpy(w0.data(), ts[0].value.data(), static_cast<std::size_t>(w0.numel()) * sizeof(float));
    OK(o.try_step());
    CHECK(o.step_count() == 1 && !same_data(w0, ts[0].value));
    barlow::tensor pv = make({3}), pg = make({3});
    CHECK(o.try_add_tensor(pv, pg, "extra").status() == BT_E_STATE); // after a step

    // wrapper-found errors: lists of different lengths, too many views
    std::vector<barlow::tensor_ref> zs;
    zs.push_back(z1);
    r = m.try_forward({x1, x2}, zs);
    CHECK(r.status() == BT_E_INVALID_ARG && contains(r.message(), "different lengths"));
    std::vector<barlow::const_tensor_ref> nine(9, x1);
    std::vector<barlow::tensor_ref> nine_z(9, z1);
    CHECK(m.try_forward(nine, nine_z).status() == BT_E_INVALID_ARG);
    CHECK(m.try_backward(nine).status() == BT_E_INVALID_ARG);
    // library-found: z of the wrong width, nothing written
    barlow::tensor zw = make({4, 15});
    fill(zw, 2.0f);
    barlow::tensor zw_copy = make({4, 15});
    std::memcpy(zw_copy.data(), zw.data(), 60 * sizeof(float));
    barlow::tensor zs2[2] = {make({4, 16}), std::move(zw)};
    r = m.try_forward({x1, x2}, barlow::tensor_list(zs2, 2)); // pointer + count
    CHECK(r.status() == BT_E_SHAPE && same_data(zs2[1], zw_copy));

    // eval-mode encoding
    barlow::tensor feats = make({4, 8});
    OK(m.try_encode(x1, feats));
    CHECK(sum_abs(feats) > 0);
    CHECK(m.try_encode(x1, z1).status() == BT_E_SHAPE);

    // optimizers over a layer and over single tensors
    barlow::layer lin;
    OK(barlow::layer::try_linear(lin, 3, 2));
    barlow::optim ol, ot;
    OK(barlow::optim::try_create(ol));
    OK(ol.try_add_layer(lin));
    CHECK(ol.try_add_layer(lin).status() == BT_E_INVALID_ARG);
    OK(barlow::optim::try_create(ot, cfg));
    OK(ot.try_add_tensor(pv, pg, "extra"));
    barlow::tensor pv2 = make({2, 2}), pg2 = make({2, 2});
    OK(ot.try_add_tensor(pv2, pg2)); // "" names it param.<index>
    CHECK(ot.try_add_tensor(pv, pg2, "other").status() != BT_OK);
    OK(ot.try_step());
    CHECK(ot.step_count() == 1);
}

// ---- cross-entropy -----------------------------------------------------------------------

void test_xent()
{
    barlow::xent xe;
    OK(barlow::xent::try_create(xe));
    barlow::tensor logits = make({3, 4}), dl = make({3, 4});
    fill(logits, 0.0f);
    std::vector<int32_t> labels = {0, 1, 2};
    barlow::xent_result res = {-1, -1, -1};
    OK(xe.try_forward(logits, labels, res));
    CHECK(res.mean_loss > 0 && res.top1_correct >= 0 && res.top5_correct == 3);
    const int32_t raw_labels[] = {3, 3, 3};
    barlow::xent_result res2 = {-1, -1, -1};
    OK(xe.try_forward(logits, raw_labels, 3, res2));
    CHECK(res2.mean_loss > 0);
    OK(xe.try_backward(dl));
    CHECK(sum_abs(dl) > 0);
    barlow::xent_result keep = res2;
    barlow::result r = xe.try_forward(logits, std::vector<int32_t>{0, 1}, keep);
    CHECK(r.status() == BT_E_SHAPE && contains(r.message(), "label count") && keep.mean_loss == res2.mean_loss);
    r = xe.try_forward(logits, std::vector<int32_t>{0, 1, 9}, keep);
    CHECK(r.status() == BT_E_INVALID_ARG && std::string(r.message()) == bt_last_error());
    barlow::xent other;
    OK(barlow::xent::try_create(other));
    barlow::tensor d2 = make({3, 4});
    CHECK(other.try_backward(d2).status() == BT_E_STATE);
}

// ---- augmentation ------------------------------------------------------------------------

void test_augment()
{
    barlow::config cfg = small_config();
    barlow::augment a;
    OK(barlow::augment::try_create(a, cfg));
    CHECK(a.output_size(0) == 8 && a.output_size(1) == 8 && a.output_size(8) == -1);
    const int n = 4, side = 12;
    std::vector<std::vector<uint8_t> > px(n, std::vector<uint8_t>(side * side));
    std::vector<const uint8_t *> images;
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < side * side; p++)
            px[i][p] = static_cast<uint8_t>((p * 7 + i * 31) % 256);
        images.push_back(px[i].data());
    }
    std::vector<int32_t> hs(n, side), ws(n, side);
    barlow::tensor v1 = make({n, 1, 8, 8}), v2 = make({n, 1, 8, 8}), w1 = make({n, 1, 8, 8}), w2 = make({n, 1, 8, 8});
    barlow::augment_state st = {99, 99};
    OK(a.try_get_state(st));
    CHECK(st.seed == 0 && st.calls == 0);
    OK(a.try_views(images, hs, ws, 1, {v1, v2}));
    OK(a.try_get_state(st));
    CHECK(st.calls == 1);
    OK(a.try_set_state(barlow::augment_state{0, 0}));
    OK(a.try_views(images.data(), hs.data(), ws.data(), n, 1, {w1, w2})); // pointer forms
    CHECK(same_data(v1, w1) && same_data(v2, w2));
    OK(a.try_views(images, side, side, 1, {w1})); // one size for all, one view
    CHECK(!same_data(v1, w1));

    barlow::tensor e = make({n, 1, 8, 8}), e2 = make({n, 1, 8, 8});
    OK(a.try_eval(images, hs, ws, 1, e));
    OK(a.try_eval(images, side, side, 1, e2));
    CHECK(same_data(e, e2) && sum_abs(e) > 0);
    OK(a.try_eval(images.data(), hs.data(), ws.data(), n, 1, e2));
    CHECK(same_data(e, e2));
    OK(a.try_get_state(st));
    CHECK(st.calls == 2); // eval does not move the counter

    // errors: lengths that differ (the wrapper), a bad channel count and a bad output (the library)
    std::vector<int32_t> short_h(n - 1, side);
    barlow::result r = a.try_views(images, short_h, ws, 1, {v1, v2});
    CHECK(r.status() == BT_E_INVALID_ARG && contains(r.message(), "differ in length"));
    CHECK(a.try_eval(images, short_h, ws, 1, e).status() == BT_E_INVALID_ARG);
    r = a.try_views(images, hs, ws, 2, {v1, v2});
    CHECK(r.status() == BT_E_INVALID_ARG && std::string(r.message()) == bt_last_error());
    barlow::tensor wrong = make({n, 1, 9, 9});
    std::memcpy(w1.data(), v1.data(), static_cast<std::size_t>(v1.numel()) * sizeof(float));
    CHECK(a.try_views(images, hs, ws, 1, {v1, wrong}).status() == BT_E_SHAPE && same_data(v1, w1));
    OK(a.try_get_state(st));
    CHECK(st.calls == 2); // failed calls do not advance it
    std::vector<barlow::tensor_ref> nine(9, v1);
    CHECK(a.try_views(images, hs, ws, 1, nine).status() == BT_E_INVALID_ARG);
}

// ---- checkpoints -------------------------------------------------------------------------

void test_checkpoint()
{
    barlow::config cfg = small_config();
    barlow::model m;
    barlow::augment a;
    barlow::optim o;
    OK(barlow::model::try_create(m, cfg));
    OK(barlow::augment::try_create(a, cfg));
    OK(barlow::optim::try_create(o, cfg));
    OK(o.try_add_model(m));
    std::vector<barlow::named_tensor> ts;
    OK(m.try_tensors(ts));
    fill(ts[0].value, 0.75f);
    const std::string path = tmp_path("ckpt.safetensors"), path2 = tmp_path("backbone.safetensors");
    OK(barlow::checkpoint::try_save(path, m, &o, &a));
    OK(barlow::checkpoint::try_save(path, m)); // model only
    OK(barlow::checkpoint::try_save(path, m, &o, &a));
    std::string v;
    OK(barlow::checkpoint::try_metadata(path, "libbarlow.version", v));
    CHECK(v == barlow::version_string());
    CHECK(barlow::checkpoint::try_metadata(path, "no.such.key", v).status() == BT_E_FORMAT);

    // a config from the file builds a model it loads into
    barlow::config c2;
    OK(barlow::config::try_create(c2));
    OK(c2.try_read_checkpoint(path));
    OK(c2.try_get("model.widths", v));
    CHECK(v == "4-8");
    OK(c2.try_get("model.projector", v));
    CHECK(v == "16-16");
    barlow::model m2;
    barlow::optim o2;
    OK(barlow::model::try_create(m2, c2));
    OK(barlow::optim::try_create(o2, cfg));
    OK(o2.try_add_model(m2));
    OK(barlow::checkpoint::try_load(path, m2, &o2));
    std::vector<barlow::named_tensor> ts2;
    OK(m2.try_tensors(ts2));
    CHECK(same_data(ts[0].value, ts2[0].value));
    OK(barlow::checkpoint::try_load(path, m2)); // model only: optimizer tensors are ignored

    // a file that is not there: BT_E_IO, nothing changed
    barlow::result r = barlow::checkpoint::try_load(tmp_path("missing.safetensors"), m2);
    CHECK(r.status() == BT_E_IO && contains(r.message(), "missing") && same_data(ts[0].value, ts2[0].value));
    CHECK(c2.try_read_checkpoint(tmp_path("missing.safetensors")).status() == BT_E_IO);

    // renamed subsets: the backbone alone in torchvision's names, back with a report
    OK(barlow::checkpoint::try_save_ex(path2, m, nullptr, nullptr, "backbone.=", BT_SAVE_MAPPED_ONLY));
    std::string report;
    OK(barlow::checkpoint::try_load_ex(path2, m2, nullptr, nullptr, "=backbone.", BT_LOAD_PARTIAL, &report));
    CHECK(contains(report, "loaded ") && contains(report, "kept "));
    OK(barlow::checkpoint::try_load_ex(path2, m2, nullptr, nullptr, "=backbone.", BT_LOAD_PARTIAL));
    CHECK(barlow::checkpoint::try_load_ex(path2, m2, nullptr, nullptr, "", 0).status() == BT_E_FORMAT);
    std::remove(path.c_str());
    std::remove(path2.c_str());
}

#if BARLOW_EXCEPTIONS
// ---- the throwing form -------------------------------------------------------------------

void test_exceptions()
{
    // bad shape -> barlow::error with the status and the library's message
    bool thrown = false;
    try {
        barlow::tensor t = barlow::tensor::create({4, 0});
        (void)t;
    } catch (const barlow::error &e) {
        thrown = true;
        CHECK(e.status() == BT_E_INVALID_ARG);
        CHECK(std::string(e.message()) == bt_last_error() && contains(e.message(), "shape[1]"));
        CHECK(contains(e.what(), "BT_E_INVALID_ARG") && contains(e.what(), bt_status_string(BT_E_INVALID_ARG)) &&
              contains(e.what(), e.message()));
    }
    CHECK(thrown);
    barlow::error made(BT_E_IO, "no disk");
    CHECK(made.status() == BT_E_IO && std::string(made.message()) == "no disk" &&
          std::string(made.what()) == std::string("BT_E_IO (") + bt_status_string(BT_E_IO) + "): no disk");
    barlow::error bare{barlow::result(BT_E_STATE, "")};
    CHECK(std::string(bare.message()).empty() && contains(bare.what(), "BT_E_STATE"));
    barlow::result ok_r;
    barlow::check(ok_r); // a success does not throw

    // a layer given an output of the wrong shape: BT_E_SHAPE, nothing changed
    barlow::layer lin = barlow::layer::linear(4, 3);
    barlow::tensor x = barlow::tensor::create({2, 4}), y = barlow::tensor::create({2, 3});
    barlow::tensor bad = barlow::tensor::create({2, 5}), dy = barlow::tensor::create({2, 3});
    barlow::tensor dx = barlow::tensor::create({2, 4}), dx2 = barlow::tensor::create({2, 4});
    fill(x, 1.0f);
    fill(dy, 0.5f);
    fill(bad, 9.0f);
    const float bad0 = bad.data()[0];
    lin.forward(x, y);
    lin.backward(dy, dx);
    thrown = false;
    try {
        lin.forward(x, bad);
    } catch (const barlow::error &e) {
        thrown = true;
        CHECK(e.status() == BT_E_SHAPE && std::string(e.message()) == bt_last_error() && *e.message());
        CHECK(std::string(e.what()) == barlow::result(BT_E_SHAPE, bt_last_error()).text());
    }
    CHECK(thrown && bad.data()[0] == bad0);
    lin.backward(dy, dx2);
    CHECK(same_data(dx, dx2));

    // barlow::error is a std::runtime_error; wrapper-found errors carry their own message
    thrown = false;
    try {
        barlow::model m = barlow::model::create(barlow::config::create().set("model.arch", "resnet18"));
        m.forward({x, x}, {y});
    } catch (const std::runtime_error &e) {
        thrown = contains(e.what(), "different lengths");
    }
    CHECK(thrown);
    thrown = false;
    try {
        barlow::config::create().get("no.such");
    } catch (const barlow::error &e) {
        thrown = e.status() == BT_E_UNSUPPORTED;
    }
    CHECK(thrown);
    thrown = false;
    try {
        barlow::model m;
        barlow::checkpoint::load(tmp_path("missing.safetensors"), m);
    } catch (const barlow::error &e) {
        thrown = e.status() == BT_E_MISUSE; // an empty model: the library says so
    }
    CHECK(thrown);

    // every class through its throwing calls: a short training step and a checkpoint round trip
    barlow::config cfg = barlow::config::create();
    cfg.set("model.arch", "resnet").set("model.blocks", "1-1").set("model.widths", "4-8").set("model.stem", "cifar");
    cfg.set("model.in_channels", "1").set("model.projector", "16-16").set("aug.preset", "fmnist").set("aug.size", "8");
    cfg.set("optim.kind", "sgd").set("threads", "1");
    CHECK(cfg.get("model.widths") == "4-8" && cfg.is_set("model.widths") && !cfg.is_set("seed"));
    cfg.set("seed", "3").restore_default("seed");
    CHECK(cfg.get("seed") == "0");
    CHECK(std::string(barlow::config::option_at(0).name) == barlow::options()[0].name);
    barlow::model m = barlow::model::create(cfg);
    barlow::augment a = barlow::augment::create(cfg);
    barlow::loss l = barlow::loss::create(cfg);
    barlow::optim o = barlow::optim::create(cfg);
    o.add_model(m);
    std::vector<uint8_t> px(4 * 10 * 10, 77);
    for (std::size_t i = 0; i < px.size(); i++)
        px[i] = static_cast<uint8_t>(i * 13 % 251);
    std::vector<const uint8_t *> images = {&px[0], &px[100], &px[200], &px[300]};
    std::vector<barlow::tensor> views, z, dz;
    for (int v = 0; v < 2; v++) {
        views.push_back(barlow::tensor::create({4, 1, 8, 8}));
        z.push_back(barlow::tensor::create({4, m.embed_dim()}));
        dz.push_back(barlow::tensor::create({4, m.embed_dim()}));
    }
    a.views(images, 10, 10, 1, views);
    CHECK(a.get_state().calls == 1);
    m.zero_grad();
    m.forward(views, z);
    const double value = l.forward(z[0], z[1]);
    l.backward(dz[0], dz[1]);
    m.backward(dz);
    o.step();
    CHECK(value > 0 && l.terms().on_diag >= 0 && o.step_count() == 1);
    CHECK(m.features(0).dim(1) == m.feature_dim() && m.tensors().size() == static_cast<std::size_t>(m.tensor_count()));
    CHECK(std::string(m.tensor_at(0).name) == "backbone.conv1.weight");
    CHECK(m.workspace_bytes(2, {4, 1, 8, 8}) > 0);
    barlow::tensor feats = barlow::tensor::create({4, m.feature_dim()});
    barlow::tensor ev = barlow::tensor::create({4, 1, 8, 8});
    a.eval(images, 10, 10, 1, ev);
    m.encode(ev, feats);
    CHECK(sum_abs(feats) > 0);
    const std::string path = tmp_path("throwing.safetensors");
    barlow::checkpoint::save(path, m, &o, &a);
    CHECK(barlow::checkpoint::metadata(path, "libbarlow.version") == barlow::version_string());
    barlow::model m2 = barlow::model::create(barlow::config::create().read_checkpoint(path));
    barlow::checkpoint::load(path, m2);
    CHECK(same_data(m.tensor_at(0).value, m2.tensor_at(0).value));
    std::remove(path.c_str());

    barlow::xent xe = barlow::xent::create();
    barlow::tensor logits = barlow::tensor::create({2, 3}), dl = barlow::tensor::create({2, 3});
    CHECK(xe.forward(logits, std::vector<int32_t>{0, 2}).mean_loss > 0);
    xe.backward(dl);
    thrown = false;
    try {
        xe.forward(logits, std::vector<int32_t>{0, 7});
    } catch (const barlow::error &e) {
        thrown = e.status() == BT_E_INVALID_ARG;
    }
    CHECK(thrown);
    barlow::layer bn = barlow::layer::batchnorm(3);
    CHECK(bn.output_shape({2, 3}) == std::vector<int64_t>({2, 3}) && bn.tensors().size() == 5);
    bn.zero_grad();
    bn.set_threads(1);
    bn.reset_parameters(1);
    CHECK(barlow::tensor::create({2, 3}).shape() == std::vector<int64_t>({2, 3}));
}
#endif

// One rank: the sum over the ranks is the rank's own buffer; the gather a copy.
int32_t one_rank_allreduce(void *, void *, int64_t, int32_t) { return 0; }
int32_t one_rank_allgather(void *, const void *send, void *recv, int64_t count, int32_t dtype)
{
    std::memcpy(recv, send, static_cast<std::size_t>(count) * (dtype ? sizeof(double) : sizeof(float)));
    return 0;
}

void test_comm()
{
    barlow::comm c;
    CHECK(barlow::comm::try_create(c, 1, 1, one_rank_allreduce, nullptr, nullptr).status() ==
          BT_E_INVALID_ARG);
    CHECK(!c);
    OK(barlow::comm::try_create(c, 0, 1, one_rank_allreduce, one_rank_allgather, nullptr));
    CHECK(static_cast<bool>(c));
    barlow::config cfg = small_config();
    barlow::model m, solo;
    barlow::loss l;
    OK(barlow::model::try_create(m, cfg));
    OK(barlow::model::try_create(solo, cfg));
    OK(barlow::loss::try_create(l, cfg));
    OK(m.try_set_comm(&c));
    OK(l.try_set_comm(&c));
    barlow::tensor x1 = make({4, 1, 8, 8}), x2 = make({4, 1, 8, 8});
    barlow::tensor z1 = make({4, 16}), z2 = make({4, 16}), s1 = make({4, 16}), s2 = make({4, 16});
    fill(x1, 0.2f);
    fill(x2, -0.3f);
    OK(m.try_forward({x1, x2}, {z1, z2}));
    OK(solo.try_forward({x1, x2}, {s1, s2}));
    float err = 0.0f;
    for (int64_t i = 0; i < z1.numel(); i++)
        err = std::max(err, std::fabs(z1.data()[i] - s1.data()[i]));
    CHECK(err < 1e-4f); // one rank: the one-process values (sums in another order)
    double value = 0;
    OK(l.try_forward(z1, z2, value));
    CHECK(value > 0);
    OK(m.try_set_comm(nullptr));
    OK(l.try_set_comm(nullptr));

    // views keyed by global index, from BGR rows with padding: the packed RGB copy's views
    barlow::augment a1, a2;
    barlow::config acfg = small_config();
    OK(acfg.try_set("aug.size", "8"));
    OK(barlow::augment::try_create(a1, acfg));
    OK(barlow::augment::try_create(a2, acfg));
    std::vector<uint8_t> rgb(12 * 10 * 3), bgr(12 * 40);
    for (std::size_t i = 0; i < rgb.size(); i++)
        rgb[i] = static_cast<uint8_t>(i * 37 % 251);
    for (int y = 0; y < 12; y++)
        for (int x = 0; x < 10; x++)
            for (int k = 0; k < 3; k++)
                bgr[y * 40 + x * 3 + 2 - k] = rgb[(y * 10 + x) * 3 + k];
    const uint8_t *pr = rgb.data(), *pb = bgr.data();
    const int32_t h = 12, w = 10;
    const int64_t stride = 40;
    barlow::tensor v1 = make({1, 3, 8, 8}), v2 = make({1, 3, 8, 8});
    barlow::tensor u1 = make({1, 3, 8, 8}), u2 = make({1, 3, 8, 8});
    OK(a1.try_views(&pr, &h, &w, 1, 3, {v1, v2}));
    OK(a2.try_views_at(0, &pb, &h, &w, &stride, 1, BT_PIXELS_BGR, {u1, u2}));
    CHECK(same_data(v1, u1) && same_data(v2, u2));
    CHECK(a2.try_views_at(-1, &pb, &h, &w, &stride, 1, BT_PIXELS_BGR, {u1, u2}).status() ==
          BT_E_INVALID_ARG);
    barlow::tensor e1 = make({1, 3, 8, 8}), e2 = make({1, 3, 8, 8});
    OK(a1.try_eval(&pr, &h, &w, 1, 3, e1));
    OK(a2.try_eval_ex(&pb, &h, &w, &stride, 1, BT_PIXELS_BGR, e2));
    CHECK(same_data(e1, e2));
}

} // namespace

int main()
{
    test_basics();
    test_tensor();
    test_moves();
    test_config();
    test_layers();
    test_model_loss_optim();
    test_backbone_and_projector_only();
    test_xent();
    test_augment();
    test_checkpoint();
    test_comm();
#if BARLOW_EXCEPTIONS
    test_exceptions();
#endif
    std::printf("cxx: %d passed, %d failed (%s)\n", passed, failed,
                BARLOW_EXCEPTIONS ? "throwing and status forms" : "status form only, no exceptions");
    return failed ? 1 : 0;
}
