// barlow.hpp - libbarlow for C++: a header-only C++11 wrapper over barlow.h.
//
// Every handle of barlow.h has a move-only owner here (barlow::tensor,
// config, layer, model, loss, xent, augment, optim, comm) that frees it on
// destruction; each has get(), release(), reset() and an explicit bool that
// says whether it holds a handle. Moving an owner moves the handle itself, so
// what borrows it (an optimizer holding a model's tensors, say) stays valid.
//
// Two ways to call, one per error style:
//  - throwing (the default): `auto m = barlow::model::create(cfg);`,
//    `m.forward({x1, x2}, {z1, z2});`. A failed call throws barlow::error,
//    whose status() is the bt_status and whose what() is
//    "BT_E_SHAPE (shape mismatch): <libbarlow's message>".
//  - status-returning, always available: every fallible call has a try_
//    twin returning barlow::result (status, name and message) and giving its
//    values through out-parameters: `barlow::model m;
//    barlow::result r = barlow::model::try_create(m, cfg); if (!r.ok()) ...`.
//    (From C++17 on, result is [[nodiscard]]: an ignored one warns.)
// Built without exceptions (-fno-exceptions, detected through
// __cpp_exceptions / __EXCEPTIONS / _CPPUNWIND) or with BARLOW_NO_EXCEPTIONS
// defined (to anything) before the include, the throwing calls and barlow::error are not compiled in;
// BARLOW_EXCEPTIONS is 1 or 0 accordingly. (Every translation unit of a
// program should see the same setting: the classes differ in their member
// functions, not in their layout.)
//
// As in C, a failed call changes nothing. The few errors the wrapper finds
// itself (arrays of different lengths, more than barlow::max_views views)
// are reported the same way, with the wrapper's own message; bt_last_error()
// does not hold it. Getters that cannot fail on a live handle (ndim, numel,
// feature_dim, step_count, ...) are noexcept and return what the C function
// returns: -1 or NULL for an empty owner, with bt_last_error() set.
//
// Views and lists: functions taking tensors take barlow::tensor_ref
// (mutable) or const_tensor_ref (read-only), borrowed, non-owning pointers
// that convert implicitly from an owner, and lists of up to 8 of them
// (tensor_list, const_tensor_list) that convert from a braced list, a
// std::vector of owners or refs, or a pointer and a length.
//
// Needs only the standard library and barlow.h. Thread rules, ownership and
// every status are those of barlow.h, which documents each C call named here.
//
// Copyright the libbarlow authors. SPDX-License-Identifier: BSD-3-Clause
#ifndef BARLOW_HPP
#define BARLOW_HPP

#include "barlow.h"

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

#if !defined(BARLOW_NO_EXCEPTIONS) &&                                                            \
    (defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND))
#define BARLOW_EXCEPTIONS 1
#include <cstring>
#include <stdexcept>
#else
#define BARLOW_EXCEPTIONS 0
#endif

#if __cplusplus >= 201703L
#define BARLOW_NODISCARD [[nodiscard]]
#else
#define BARLOW_NODISCARD
#endif

namespace barlow {

// ---------------------------------------------------------------------------
// Version, build and status text
// ---------------------------------------------------------------------------

/// The version of the library actually linked (MAJOR*10000 + MINOR*100 + PATCH).
inline int32_t version_number() noexcept { return bt_version_number(); }
/// The same as text, "0.1.0".
inline const char *version_string() noexcept { return bt_version_string(); }
/// One line on how the library was built and what it runs on.
inline const char *build_info() noexcept { return bt_build_info(); }
/// libbarlow's text for a status ("shape mismatch").
inline const char *status_string(bt_status s) noexcept { return bt_status_string(s); }

/// The macro name of a status ("BT_E_SHAPE"); "BT_E_UNKNOWN" for codes this header does not know.
inline const char *status_name(bt_status s) noexcept
{
    switch (s) {
    case BT_OK: return "BT_OK";
    case BT_E_INVALID_ARG: return "BT_E_INVALID_ARG";
    case BT_E_NOMEM: return "BT_E_NOMEM";
    case BT_E_SHAPE: return "BT_E_SHAPE";
    case BT_E_STATE: return "BT_E_STATE";
    case BT_E_UNSUPPORTED: return "BT_E_UNSUPPORTED";
    case BT_E_MISUSE: return "BT_E_MISUSE";
    case BT_E_IO: return "BT_E_IO";
    case BT_E_FORMAT: return "BT_E_FORMAT";
    case BT_E_NUMERIC: return "BT_E_NUMERIC";
    case BT_E_INTERNAL: return "BT_E_INTERNAL";
    case BT_E_COMM: return "BT_E_COMM";
    default: return "BT_E_UNKNOWN";
    }
}

/// This thread's message of the last failed libbarlow call, as bt_last_error().
inline std::string last_error() { return bt_last_error(); }

/// The most views bt_model_forward, bt_model_backward and bt_augment_views take.
static const int32_t max_views = 8;

// ---------------------------------------------------------------------------
// Results and errors
// ---------------------------------------------------------------------------

/// The outcome of a try_ call: a bt_status and, on failure, its message.
/// message() is libbarlow's bt_last_error() text, which stays valid until
/// this thread's next failing libbarlow call, or a static text of the wrapper.
class BARLOW_NODISCARD result {
public:
    /// Success.
    result() noexcept : status_(BT_OK), message_("") {}
    /// A status with its message (message is not copied: keep it alive).
    result(bt_status st, const char *message) noexcept
        : status_(st), message_(message ? message : "")
    {
    }
    /// The result of a C call that returned st: on failure, with bt_last_error().
    static result from(bt_status st) noexcept
    {
        return st == BT_OK ? result() : result(st, bt_last_error());
    }
    bt_status status() const noexcept { return status_; }
    bool ok() const noexcept { return status_ == BT_OK; }
    /// "" on success.
    const char *message() const noexcept { return message_; }
    /// status_name(status()), e.g. "BT_E_SHAPE".
    const char *name() const noexcept { return status_name(status_); }
    /// "BT_E_SHAPE (shape mismatch): message", the text of barlow::error::what().
    std::string text() const
    {
        std::string s = name();
        s += " (";
        s += status_string(status_);
        s += ")";
        if (*message_) {
            s += ": ";
            s += message_;
        }
        return s;
    }

private:
    bt_status status_;
    const char *message_;
};

#if BARLOW_EXCEPTIONS
/// The exception the throwing calls raise: status() is the bt_status,
/// message() libbarlow's message (copied), what() "NAME (text): message".
class error : public std::runtime_error {
public:
    explicit error(const result &r)
        : std::runtime_error(r.text()), status_(r.status()),
          offset_(std::strlen(what()) - std::strlen(r.message()))
    {
    }
    error(bt_status st, const char *message) : error(result(st, message)) {}
    bt_status status() const noexcept { return status_; }
    /// libbarlow's message alone (the tail of what()).
    const char *message() const noexcept { return what() + offset_; }

private:
    bt_status status_;
    std::size_t offset_;
};

/// Throws barlow::error unless r is a success.
inline void check(const result &r)
{
    if (!r.ok())
        throw error(r);
}
#endif

namespace detail {

// Owner of one C handle, freed with Free; the common part of every owner class.
template <typename T, void (*Free)(T *)>
class owner {
public:
    owner() noexcept : p_(nullptr) {}
    explicit owner(T *p) noexcept : p_(p) {}
    ~owner() { Free(p_); }
    owner(const owner &) = delete;
    owner &operator=(const owner &) = delete;
    owner(owner &&o) noexcept : p_(o.p_) { o.p_ = nullptr; }
    owner &operator=(owner &&o) noexcept
    {
        if (this != &o) {
            Free(p_);
            p_ = o.p_;
            o.p_ = nullptr;
        }
        return *this;
    }
    /// The C handle, still owned (NULL when empty).
    T *get() const noexcept { return p_; }
    /// Gives up ownership: the caller frees the returned handle.
    T *release() noexcept
    {
        T *p = p_;
        p_ = nullptr;
        return p;
    }
    /// Frees the handle held and takes p (NULL: becomes empty).
    void reset(T *p = nullptr) noexcept
    {
        if (p != p_) {
            Free(p_);
            p_ = p;
        }
    }
    explicit operator bool() const noexcept { return p_ != nullptr; }

protected:
    T *p_;
};

// An error the wrapper finds itself, with a static message.
inline result wrapper_error(bt_status st, const char *message) noexcept { return result(st, message); }

// Fits a container size into an int32_t count, or fails.
inline bool fits_i32(std::size_t n) noexcept { return n <= static_cast<std::size_t>(INT32_MAX); }

// Read-only accessors shared by tensor, tensor_ref and const_tensor_ref.
template <typename D>
class tensor_info {
public:
    /// Number of dimensions (-1 for an empty handle).
    int32_t ndim() const noexcept { return bt_tensor_ndim(c()); }
    /// Size of one axis, negative counts from the end (-1 for a bad axis or handle).
    int64_t dim(int32_t axis) const noexcept { return bt_tensor_dim(c(), axis); }
    /// Number of elements (-1 for an empty handle).
    int64_t numel() const noexcept { return bt_tensor_numel(c()); }
    /// The shape into out (out unchanged on failure).
    result try_shape(std::vector<int64_t> &out) const
    {
        int64_t s[BT_TENSOR_MAX_DIMS];
        int32_t n = 0;
        result r = result::from(bt_tensor_shape(c(), &n, s, BT_TENSOR_MAX_DIMS));
        if (r.ok())
            out.assign(s, s + n);
        return r;
    }
#if BARLOW_EXCEPTIONS
    /// The shape, e.g. {8, 1, 28, 28}.
    std::vector<int64_t> shape() const
    {
        std::vector<int64_t> s;
        check(try_shape(s));
        return s;
    }
#endif

private:
    const bt_tensor *c() const noexcept { return static_cast<const D *>(this)->get(); }
};

} // namespace detail

// ---------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------

/// An owned float32 tensor, 1 to 4 dimensions, row-major (bt_tensor).
class tensor : public detail::owner<bt_tensor, bt_tensor_free>, public detail::tensor_info<tensor> {
public:
    tensor() noexcept {}
    /// Adopts t (created by bt_tensor_create or bt_tensor_wrap).
    explicit tensor(bt_tensor *t) noexcept : owner(t) {}

    /// A zero-filled tensor of shape[0..ndim-1] (bt_tensor_create).
    static result try_create(tensor &out, const int64_t *shape, int32_t ndim) noexcept
    {
        bt_tensor *t = nullptr;
        result r = result::from(bt_tensor_create(&t, ndim, shape));
        if (r.ok())
            out.reset(t);
        return r;
    }
    static result try_create(tensor &out, const std::vector<int64_t> &shape) noexcept
    {
        if (!detail::fits_i32(shape.size()))
            return detail::wrapper_error(BT_E_INVALID_ARG, "barlow::tensor: too many dimensions");
        return try_create(out, shape.data(), static_cast<int32_t>(shape.size()));
    }
    /// A tensor over caller memory (bt_tensor_wrap): data must hold numel
    /// floats and outlive the tensor, which never frees it.
    static result try_wrap(tensor &out, float *data, const int64_t *shape, int32_t ndim) noexcept
    {
        bt_tensor *t = nullptr;
        result r = result::from(bt_tensor_wrap(&t, data, ndim, shape));
        if (r.ok())
            out.reset(t);
        return r;
    }
    static result try_wrap(tensor &out, float *data, const std::vector<int64_t> &shape) noexcept
    {
        if (!detail::fits_i32(shape.size()))
            return detail::wrapper_error(BT_E_INVALID_ARG, "barlow::tensor: too many dimensions");
        return try_wrap(out, data, shape.data(), static_cast<int32_t>(shape.size()));
    }
#if BARLOW_EXCEPTIONS
    static tensor create(const std::vector<int64_t> &shape)
    {
        tensor t;
        check(try_create(t, shape));
        return t;
    }
    static tensor create(const int64_t *shape, int32_t ndim)
    {
        tensor t;
        check(try_create(t, shape, ndim));
        return t;
    }
    static tensor wrap(float *data, const std::vector<int64_t> &shape)
    {
        tensor t;
        check(try_wrap(t, data, shape));
        return t;
    }
    static tensor wrap(float *data, const int64_t *shape, int32_t ndim)
    {
        tensor t;
        check(try_wrap(t, data, shape, ndim));
        return t;
    }
#endif
    /// The first element (NULL for an empty tensor); numel() floats, row-major.
    float *data() const noexcept { return bt_tensor_data(p_); }
};

/// A borrowed, mutable tensor: an owner's, or one a layer or model owns.
/// Copyable; it never frees anything.
class tensor_ref : public detail::tensor_info<tensor_ref> {
public:
    tensor_ref() noexcept : t_(nullptr) {}
    tensor_ref(bt_tensor *t) noexcept : t_(t) {}
    tensor_ref(const tensor &t) noexcept : t_(t.get()) {}
    bt_tensor *get() const noexcept { return t_; }
    explicit operator bool() const noexcept { return t_ != nullptr; }
    float *data() const noexcept { return bt_tensor_data(t_); }

private:
    bt_tensor *t_;
};

/// A borrowed, read-only tensor (inputs; bt_model_features' output).
class const_tensor_ref : public detail::tensor_info<const_tensor_ref> {
public:
    const_tensor_ref() noexcept : t_(nullptr) {}
    const_tensor_ref(const bt_tensor *t) noexcept : t_(t) {}
    const_tensor_ref(const tensor &t) noexcept : t_(t.get()) {}
    const_tensor_ref(const tensor_ref &t) noexcept : t_(t.get()) {}
    const bt_tensor *get() const noexcept { return t_; }
    explicit operator bool() const noexcept { return t_ != nullptr; }
    /// Read-only data (bt_tensor_data; the C call takes a mutable handle).
    const float *data() const noexcept { return bt_tensor_data(const_cast<bt_tensor *>(t_)); }

private:
    const bt_tensor *t_;
};

namespace detail {

// A list of up to max_views tensor pointers, built without allocating.
template <typename Ref, typename Ptr>
class ref_list {
public:
    ref_list(std::initializer_list<Ref> l) noexcept : n_(0) { fill(l.begin(), l.size()); }
    /// A vector of owners or refs.
    template <typename E>
    ref_list(const std::vector<E> &v) noexcept : n_(0)
    {
        fill(v.data(), v.size());
    }
    /// An array of n owners or refs.
    template <typename E>
    ref_list(const E *p, std::size_t n) noexcept : n_(0)
    {
        fill(p, n);
    }
    /// Number of entries (more than max_views are counted, not kept).
    std::size_t size() const noexcept { return n_; }
    /// The C array (valid while the list lives).
    Ptr const *data() const noexcept { return p_; }
    // The wrapper's check: 1..max_views entries fit the C calls.
    bool too_many() const noexcept { return n_ > static_cast<std::size_t>(max_views); }

private:
    template <typename E>
    void fill(const E *e, std::size_t n) noexcept
    {
        n_ = n;
        for (std::size_t i = 0; i < n && i < static_cast<std::size_t>(max_views); i++)
            p_[i] = e[i].get();
    }
    Ptr p_[max_views] = {};
    std::size_t n_;
};

} // namespace detail

/// A list of 1 to 8 mutable tensors (outputs: z, dx, augmented views):
/// `{z1, z2}`, a std::vector of tensors or tensor_refs, or (pointer, count).
typedef detail::ref_list<tensor_ref, bt_tensor *> tensor_list;
/// The same for inputs (x, dz).
typedef detail::ref_list<const_tensor_ref, const bt_tensor *> const_tensor_list;

namespace detail {
inline result too_many_views() noexcept
{
    return wrapper_error(BT_E_INVALID_ARG, "barlow: more than 8 views (barlow::max_views)");
}
} // namespace detail

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/// The description of one registered option (all strings static).
struct option {
    const char *name;
    const char *type;
    const char *default_value;
    const char *range;
    const char *description;
};

/// Every registered option, in order: `for (const barlow::option &o : barlow::options())`.
class option_list {
public:
    /// Iterates the options by index (an input iterator yielding options by value).
    class iterator {
    public:
        typedef std::input_iterator_tag iterator_category;
        typedef option value_type;
        typedef std::ptrdiff_t difference_type;
        typedef const option *pointer;
        typedef option reference;
        explicit iterator(int32_t i) noexcept : i_(i) {}
        option operator*() const noexcept { return option_list::at(i_); }
        iterator &operator++() noexcept
        {
            ++i_;
            return *this;
        }
        bool operator==(const iterator &o) const noexcept { return i_ == o.i_; }
        bool operator!=(const iterator &o) const noexcept { return i_ != o.i_; }

    private:
        int32_t i_;
    };
    /// bt_config_option_count().
    static int32_t size() noexcept { return bt_config_option_count(); }
    /// Option i (bt_config_option); all fields "" when i is out of range.
    static option at(int32_t i) noexcept
    {
        option o = {"", "", "", "", ""};
        if (bt_config_option(i, &o.name, &o.type, &o.default_value, &o.range, &o.description) != BT_OK)
            o.name = o.type = o.default_value = o.range = o.description = "";
        return o;
    }
    option operator[](int32_t i) const noexcept { return at(i); }
    iterator begin() const noexcept { return iterator(0); }
    iterator end() const noexcept { return iterator(size()); }
};

/// The registered options, iterable.
inline option_list options() noexcept { return option_list(); }

/// A set of named options (bt_config): create, set, get, then pass to the
/// create calls. Handles do not keep it.
class config : public detail::owner<bt_config, bt_config_free> {
public:
    config() noexcept {}
    explicit config(bt_config *c) noexcept : owner(c) {}
    /// get() is the handle, get(name) an option's value.
    using owner::get;

    /// A configuration holding every default (bt_config_create).
    static result try_create(config &out) noexcept
    {
        bt_config *c = nullptr;
        result r = result::from(bt_config_create(&c));
        if (r.ok())
            out.reset(c);
        return r;
    }
    /// Set an option from text (bt_config_set), e.g. ("loss.lambda", "0.004").
    result try_set(const std::string &name, const std::string &value) noexcept
    {
        return result::from(bt_config_set(p_, name.c_str(), value.c_str()));
    }
    /// Restore an option's default (bt_config_set with value NULL).
    result try_restore_default(const std::string &name) noexcept
    {
        return result::from(bt_config_set(p_, name.c_str(), nullptr));
    }
    /// An option's value as text (bt_config_get, any length).
    result try_get(const std::string &name, std::string &value) const
    {
        std::vector<char> buf(256);
        for (;;) {
            bt_status st = bt_config_get(p_, name.c_str(), buf.data(), buf.size());
            if (st == BT_OK) {
                value = buf.data();
                return result();
            }
            // too small a buffer is BT_E_INVALID_ARG; so are other errors, which repeat
            if (st != BT_E_INVALID_ARG || buf.size() >= 65536)
                return result::from(st);
            buf.resize(buf.size() * 4);
        }
    }
    /// Whether the option was set explicitly (bt_config_is_set).
    /// (The C call returns -1 without a status: the wrapper reports
    /// BT_E_MISUSE for an empty config, else BT_E_UNSUPPORTED, an unknown name.)
    result try_is_set(const std::string &name, bool &is) const noexcept
    {
        int32_t v = bt_config_is_set(p_, name.c_str());
        if (v < 0)
            return result(p_ ? BT_E_UNSUPPORTED : BT_E_MISUSE, bt_last_error());
        is = v == 1;
        return result();
    }
    /// The model.* options (and evaluation view) of the model saved in path
    /// (bt_config_read_checkpoint): then model::create builds what the file loads into.
    result try_read_checkpoint(const std::string &path) noexcept
    {
        return result::from(bt_config_read_checkpoint(p_, path.c_str()));
    }
    /// Number of registered options (bt_config_option_count).
    static int32_t option_count() noexcept { return bt_config_option_count(); }
    /// Option i (bt_config_option).
    static result try_option(int32_t i, option &out) noexcept
    {
        option o;
        result r = result::from(bt_config_option(i, &o.name, &o.type, &o.default_value, &o.range,
                                                 &o.description));
        if (r.ok())
            out = o;
        return r;
    }
    /// Every registered option, iterable.
    static option_list options() noexcept { return option_list(); }

#if BARLOW_EXCEPTIONS
    static config create()
    {
        config c;
        check(try_create(c));
        return c;
    }
    /// Returns *this, so calls chain: cfg.set("a", "1").set("b", "2").
    config &set(const std::string &name, const std::string &value)
    {
        check(try_set(name, value));
        return *this;
    }
    config &restore_default(const std::string &name)
    {
        check(try_restore_default(name));
        return *this;
    }
    std::string get(const std::string &name) const
    {
        std::string v;
        check(try_get(name, v));
        return v;
    }
    bool is_set(const std::string &name) const
    {
        bool v = false;
        check(try_is_set(name, v));
        return v;
    }
    config &read_checkpoint(const std::string &path)
    {
        check(try_read_checkpoint(path));
        return *this;
    }
    static option option_at(int32_t i)
    {
        option o;
        check(try_option(i, o));
        return o;
    }
#endif
};

// ---------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------

/// A tensor a layer or model owns, with its name and gradient (grad is
/// empty for buffers such as BatchNorm running statistics).
struct named_tensor {
    const char *name;
    tensor_ref value;
    tensor_ref grad;
};

/// A standalone layer with PyTorch's semantics (bt_layer): conv2d, linear,
/// batchnorm, relu, maxpool2d, avgpool; forward, backward, its tensors.
class layer : public detail::owner<bt_layer, bt_layer_free> {
public:
    layer() noexcept {}
    explicit layer(bt_layer *l) noexcept : owner(l) {}

    static result try_conv2d(layer &out, int32_t in_ch, int32_t out_ch, int32_t kernel,
                             int32_t stride = 1, int32_t pad = 0, bool bias = true) noexcept
    {
        bt_layer *l = nullptr;
        bt_status st = bt_layer_conv2d_create(&l, in_ch, out_ch, kernel, stride, pad, bias ? 1 : 0);
        return adopt(out, st, l);
    }
    static result try_linear(layer &out, int32_t in_features, int32_t out_features,
                             bool bias = true) noexcept
    {
        bt_layer *l = nullptr;
        bt_status st = bt_layer_linear_create(&l, in_features, out_features, bias ? 1 : 0);
        return adopt(out, st, l);
    }
    static result try_batchnorm(layer &out, int32_t channels, double eps = 1e-5, double momentum = 0.1,
                                bool affine = true) noexcept
    {
        bt_layer *l = nullptr;
        bt_status st = bt_layer_batchnorm_create(&l, channels, eps, momentum, affine ? 1 : 0);
        return adopt(out, st, l);
    }
    static result try_relu(layer &out) noexcept
    {
        bt_layer *l = nullptr;
        bt_status st = bt_layer_relu_create(&l);
        return adopt(out, st, l);
    }
    static result try_maxpool2d(layer &out, int32_t kernel, int32_t stride, int32_t pad = 0) noexcept
    {
        bt_layer *l = nullptr;
        bt_status st = bt_layer_maxpool2d_create(&l, kernel, stride, pad);
        return adopt(out, st, l);
    }
    static result try_avgpool(layer &out) noexcept
    {
        bt_layer *l = nullptr;
        bt_status st = bt_layer_avgpool_create(&l);
        return adopt(out, st, l);
    }

    /// The output shape for an input of in_shape[0..ndim-1] (bt_layer_output_shape).
    result try_output_shape(const int64_t *in_shape, int32_t ndim, std::vector<int64_t> &out) const
    {
        int64_t s[BT_TENSOR_MAX_DIMS];
        int32_t n = 0;
        result r = result::from(bt_layer_output_shape(p_, ndim, in_shape, &n, s));
        if (r.ok())
            out.assign(s, s + n);
        return r;
    }
    result try_output_shape(const std::vector<int64_t> &in_shape, std::vector<int64_t> &out) const
    {
        if (!detail::fits_i32(in_shape.size()))
            return detail::wrapper_error(BT_E_INVALID_ARG, "barlow::layer: too many dimensions");
        return try_output_shape(in_shape.data(), static_cast<int32_t>(in_shape.size()), out);
    }
    /// y = layer(x) (bt_layer_forward); y must have the output shape.
    result try_forward(const_tensor_ref x, tensor_ref y, bool training = true) noexcept
    {
        return result::from(bt_layer_forward(p_, x.get(), y.get(), training ? 1 : 0));
    }
    /// Backward of the last forward (bt_layer_backward): dx gets the input
    /// gradient (leave it empty to skip); parameter gradients accumulate.
    result try_backward(const_tensor_ref dy, tensor_ref dx = tensor_ref()) noexcept
    {
        return result::from(bt_layer_backward(p_, dy.get(), dx.get()));
    }
    /// Number of parameter and buffer tensors (-1 for an empty layer).
    int32_t tensor_count() const noexcept { return bt_layer_tensor_count(p_); }
    /// Tensor i with its PyTorch name, borrowed from the layer (bt_layer_tensor).
    result try_tensor_at(int32_t i, named_tensor &out) noexcept
    {
        const char *name = nullptr;
        bt_tensor *v = nullptr, *g = nullptr;
        result r = result::from(bt_layer_tensor(p_, i, &name, &v, &g));
        if (r.ok()) {
            out.name = name;
            out.value = v;
            out.grad = g;
        }
        return r;
    }
    /// Every tensor of the layer.
    result try_tensors(std::vector<named_tensor> &out)
    {
        std::vector<named_tensor> all;
        int32_t n = tensor_count();
        if (n < 0)
            return result(BT_E_MISUSE, bt_last_error());
        for (int32_t i = 0; i < n; i++) {
            named_tensor t;
            result r = try_tensor_at(i, t);
            if (!r.ok())
                return r;
            all.push_back(t);
        }
        out.swap(all);
        return result();
    }
    result try_zero_grad() noexcept { return result::from(bt_layer_zero_grad(p_)); }
    /// Threads of this layer (0: BT_NUM_THREADS or all cores).
    result try_set_threads(int32_t n) noexcept { return result::from(bt_layer_set_threads(p_, n)); }
    /// Re-initialise parameters and buffers from seed (bt_layer_reset_parameters).
    result try_reset_parameters(uint64_t seed) noexcept
    {
        return result::from(bt_layer_reset_parameters(p_, seed));
    }

#if BARLOW_EXCEPTIONS
    static layer conv2d(int32_t in_ch, int32_t out_ch, int32_t kernel, int32_t stride = 1,
                        int32_t pad = 0, bool bias = true)
    {
        layer l;
        check(try_conv2d(l, in_ch, out_ch, kernel, stride, pad, bias));
        return l;
    }
    static layer linear(int32_t in_features, int32_t out_features, bool bias = true)
    {
        layer l;
        check(try_linear(l, in_features, out_features, bias));
        return l;
    }
    static layer batchnorm(int32_t channels, double eps = 1e-5, double momentum = 0.1, bool affine = true)
    {
        layer l;
        check(try_batchnorm(l, channels, eps, momentum, affine));
        return l;
    }
    static layer relu()
    {
        layer l;
        check(try_relu(l));
        return l;
    }
    static layer maxpool2d(int32_t kernel, int32_t stride, int32_t pad = 0)
    {
        layer l;
        check(try_maxpool2d(l, kernel, stride, pad));
        return l;
    }
    static layer avgpool()
    {
        layer l;
        check(try_avgpool(l));
        return l;
    }
    std::vector<int64_t> output_shape(const std::vector<int64_t> &in_shape) const
    {
        std::vector<int64_t> s;
        check(try_output_shape(in_shape, s));
        return s;
    }
    std::vector<int64_t> output_shape(const int64_t *in_shape, int32_t ndim) const
    {
        std::vector<int64_t> s;
        check(try_output_shape(in_shape, ndim, s));
        return s;
    }
    void forward(const_tensor_ref x, tensor_ref y, bool training = true) { check(try_forward(x, y, training)); }
    void backward(const_tensor_ref dy, tensor_ref dx = tensor_ref()) { check(try_backward(dy, dx)); }
    named_tensor tensor_at(int32_t i)
    {
        named_tensor t;
        check(try_tensor_at(i, t));
        return t;
    }
    std::vector<named_tensor> tensors()
    {
        std::vector<named_tensor> v;
        check(try_tensors(v));
        return v;
    }
    void zero_grad() { check(try_zero_grad()); }
    void set_threads(int32_t n) { check(try_set_threads(n)); }
    void reset_parameters(uint64_t seed) { check(try_reset_parameters(seed)); }
#endif

private:
    static result adopt(layer &out, bt_status st, bt_layer *l) noexcept
    {
        result r = result::from(st);
        if (r.ok())
            out.reset(l);
        return r;
    }
};

// ---------------------------------------------------------------------------
// Data-parallel communicator
// ---------------------------------------------------------------------------

/// The host's collectives for data-parallel training (bt_comm; barlow.h,
/// "Data-parallel training"): examples/mpi_comm.h makes one from MPI. Models
/// and losses borrow it: it must outlive their use of it.
class comm : public detail::owner<bt_comm, bt_comm_free> {
public:
    comm() noexcept {}
    explicit comm(bt_comm *c) noexcept : owner(c) {}

    /// Rank `rank` of `size`; allgather may be null (bt_comm_create).
    static result try_create(comm &out, int32_t rank, int32_t size, bt_comm_allreduce_fn allreduce,
                             bt_comm_allgather_fn allgather, void *user) noexcept
    {
        bt_comm *c = nullptr;
        result r = result::from(bt_comm_create(&c, rank, size, allreduce, allgather, user));
        if (r.ok())
            out.reset(c);
        return r;
    }
#if BARLOW_EXCEPTIONS
    static comm create(int32_t rank, int32_t size, bt_comm_allreduce_fn allreduce,
                       bt_comm_allgather_fn allgather, void *user)
    {
        comm c;
        check(try_create(c, rank, size, allreduce, allgather, user));
        return c;
    }
#endif
};

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

/// The Barlow Twins network, encoder + projector, built from model.* options (bt_model).
class model : public detail::owner<bt_model, bt_model_free> {
public:
    model() noexcept {}
    explicit model(bt_model *m) noexcept : owner(m) {}

    /// Build a model from cfg (bt_model_create).
    static result try_create(model &out, const config &cfg) noexcept
    {
        bt_model *m = nullptr;
        result r = result::from(bt_model_create(&m, cfg.get()));
        if (r.ok())
            out.reset(m);
        return r;
    }
    /// Backbone output width (-1 for an empty model).
    int64_t feature_dim() const noexcept { return bt_model_feature_dim(p_); }
    /// Projector output width (-1 for an empty model).
    int64_t embed_dim() const noexcept { return bt_model_embed_dim(p_); }
    /// Training-mode forward of x.size() views into z (bt_model_forward).
    result try_forward(const const_tensor_list &x, const tensor_list &z) noexcept
    {
        if (x.too_many() || z.too_many())
            return detail::too_many_views();
        if (x.size() != z.size())
            return detail::wrapper_error(BT_E_INVALID_ARG,
                                         "barlow::model::forward: x and z have different lengths");
        return result::from(bt_model_forward(p_, static_cast<int32_t>(x.size()), x.data(), z.data()));
    }
    /// Backward of the last forward (bt_model_backward); gradients accumulate.
    result try_backward(const const_tensor_list &dz) noexcept
    {
        if (dz.too_many())
            return detail::too_many_views();
        return result::from(bt_model_backward(p_, static_cast<int32_t>(dz.size()), dz.data()));
    }
    /// Training-mode forward of the backbone alone (bt_model_forward_backbone).
    result try_forward_backbone(const const_tensor_list &x, const tensor_list &features) noexcept
    {
        if (x.too_many() || features.too_many())
            return detail::too_many_views();
        if (x.size() != features.size())
            return detail::wrapper_error(
                BT_E_INVALID_ARG, "barlow::model::forward_backbone: x and features have different lengths");
        return result::from(bt_model_forward_backbone(p_, static_cast<int32_t>(x.size()), x.data(),
                                                      features.data()));
    }
    /// Backward of the last forward_backbone; gradients accumulate, no input gradient
    /// (bt_model_backward_backbone with dx NULL).
    result try_backward_backbone(const const_tensor_list &dfeatures) noexcept
    {
        if (dfeatures.too_many())
            return detail::too_many_views();
        return result::from(bt_model_backward_backbone(p_, static_cast<int32_t>(dfeatures.size()),
                                                       dfeatures.data(), nullptr));
    }
    /// The same, with the input gradient of each view into dx (bt_model_backward_backbone).
    result try_backward_backbone(const const_tensor_list &dfeatures, const tensor_list &dx) noexcept
    {
        if (dfeatures.too_many() || dx.too_many())
            return detail::too_many_views();
        if (dfeatures.size() != dx.size())
            return detail::wrapper_error(
                BT_E_INVALID_ARG, "barlow::model::backward_backbone: dfeatures and dx have different lengths");
        return result::from(bt_model_backward_backbone(p_, static_cast<int32_t>(dfeatures.size()),
                                                       dfeatures.data(), dx.data()));
    }
    /// Gradient of view `view`'s input after backward, model.arch none (bt_model_input_grad).
    result try_input_grad(int32_t view, tensor_ref dx) noexcept
    {
        return result::from(bt_model_input_grad(p_, view, dx.get()));
    }
    /// Workspace bytes of a training step of nviews views of shape (bt_model_workspace_bytes).
    result try_workspace_bytes(int32_t nviews, const int64_t *shape, int32_t ndim, std::size_t &bytes) noexcept
    {
        return result::from(bt_model_workspace_bytes(p_, nviews, ndim, shape, &bytes));
    }
    result try_workspace_bytes(int32_t nviews, const std::vector<int64_t> &shape, std::size_t &bytes) noexcept
    {
        if (!detail::fits_i32(shape.size()))
            return detail::wrapper_error(BT_E_INVALID_ARG, "barlow::model: too many dimensions");
        return try_workspace_bytes(nviews, shape.data(), static_cast<int32_t>(shape.size()), bytes);
    }
    /// Backbone output of one view of the last training forward, borrowed (bt_model_features).
    result try_features(int32_t view, const_tensor_ref &out) noexcept
    {
        const bt_tensor *t = nullptr;
        result r = result::from(bt_model_features(p_, view, &t));
        if (r.ok())
            out = t;
        return r;
    }
    /// Eval-mode backbone features of x (bt_model_encode).
    result try_encode(const_tensor_ref x, tensor_ref f) noexcept
    {
        return result::from(bt_model_encode(p_, x.get(), f.get()));
    }
    result try_zero_grad() noexcept { return result::from(bt_model_zero_grad(p_)); }
    /// Number of tensors, parameters and buffers (-1 for an empty model).
    int32_t tensor_count() const noexcept { return bt_model_tensor_count(p_); }
    /// Tensor i in state_dict order, borrowed (bt_model_tensor).
    result try_tensor_at(int32_t i, named_tensor &out) noexcept
    {
        const char *name = nullptr;
        bt_tensor *v = nullptr, *g = nullptr;
        result r = result::from(bt_model_tensor(p_, i, &name, &v, &g));
        if (r.ok()) {
            out.name = name;
            out.value = v;
            out.grad = g;
        }
        return r;
    }
    /// Every tensor of the model.
    result try_tensors(std::vector<named_tensor> &out)
    {
        std::vector<named_tensor> all;
        int32_t n = tensor_count();
        if (n < 0)
            return result(BT_E_MISUSE, bt_last_error());
        all.reserve(static_cast<std::size_t>(n));
        for (int32_t i = 0; i < n; i++) {
            named_tensor t;
            result r = try_tensor_at(i, t);
            if (!r.ok())
                return r;
            all.push_back(t);
        }
        out.swap(all);
        return result();
    }
    /// Threads for the model's loops and GEMMs, 1 to 1024 (bt_model_set_threads).
    result try_set_threads(int32_t threads) noexcept { return result::from(bt_model_set_threads(p_, threads)); }
    /// Data-parallel training passes over c, collective; a null c: one process (bt_model_set_comm).
    result try_set_comm(comm *c) noexcept { return result::from(bt_model_set_comm(p_, c ? c->get() : nullptr)); }

#if BARLOW_EXCEPTIONS
    void set_comm(comm *c) { check(try_set_comm(c)); }
    static model create(const config &cfg)
    {
        model m;
        check(try_create(m, cfg));
        return m;
    }
    void forward(const const_tensor_list &x, const tensor_list &z) { check(try_forward(x, z)); }
    void backward(const const_tensor_list &dz) { check(try_backward(dz)); }
    void forward_backbone(const const_tensor_list &x, const tensor_list &features)
    {
        check(try_forward_backbone(x, features));
    }
    void backward_backbone(const const_tensor_list &dfeatures) { check(try_backward_backbone(dfeatures)); }
    void backward_backbone(const const_tensor_list &dfeatures, const tensor_list &dx)
    {
        check(try_backward_backbone(dfeatures, dx));
    }
    void input_grad(int32_t view, tensor_ref dx) { check(try_input_grad(view, dx)); }
    std::size_t workspace_bytes(int32_t nviews, const std::vector<int64_t> &shape)
    {
        std::size_t b = 0;
        check(try_workspace_bytes(nviews, shape, b));
        return b;
    }
    std::size_t workspace_bytes(int32_t nviews, const int64_t *shape, int32_t ndim)
    {
        std::size_t b = 0;
        check(try_workspace_bytes(nviews, shape, ndim, b));
        return b;
    }
    const_tensor_ref features(int32_t view)
    {
        const_tensor_ref t;
        check(try_features(view, t));
        return t;
    }
    void encode(const_tensor_ref x, tensor_ref f) { check(try_encode(x, f)); }
    void zero_grad() { check(try_zero_grad()); }
    named_tensor tensor_at(int32_t i)
    {
        named_tensor t;
        check(try_tensor_at(i, t));
        return t;
    }
    std::vector<named_tensor> tensors()
    {
        std::vector<named_tensor> v;
        check(try_tensors(v));
        return v;
    }
    void set_threads(int32_t threads) { check(try_set_threads(threads)); }
#endif
};

// ---------------------------------------------------------------------------
// Loss
// ---------------------------------------------------------------------------

/// The raw terms of a loss forward, before lambda and scale (bt_loss_terms).
struct loss_terms {
    double on_diag;
    double off_diag;
};

/// The Barlow Twins loss of two [N, D] embeddings (bt_loss).
class loss : public detail::owner<bt_loss, bt_loss_free> {
public:
    loss() noexcept {}
    explicit loss(bt_loss *l) noexcept : owner(l) {}

    /// A loss from cfg's loss.* options (bt_loss_create).
    static result try_create(loss &out, const config &cfg) noexcept { return make(out, cfg.get()); }
    /// A loss with every default.
    static result try_create(loss &out) noexcept { return make(out, nullptr); }
    /// The loss of za, zb into value (bt_loss_forward).
    result try_forward(const_tensor_ref za, const_tensor_ref zb, double &value) noexcept
    {
        return result::from(bt_loss_forward(p_, za.get(), zb.get(), &value));
    }
    /// Gradients of the last forward, overwritten (bt_loss_backward).
    result try_backward(tensor_ref dza, tensor_ref dzb) noexcept
    {
        return result::from(bt_loss_backward(p_, dza.get(), dzb.get()));
    }
    result try_terms(loss_terms &out) const noexcept
    {
        loss_terms t = {0, 0};
        result r = result::from(bt_loss_terms(p_, &t.on_diag, &t.off_diag));
        if (r.ok())
            out = t;
        return r;
    }
    /// BT_LOSS_PATH_AUTO, _DXD or _GRAM for the following forwards (bt_loss_set_path).
    result try_set_path(int32_t path) noexcept { return result::from(bt_loss_set_path(p_, path)); }
    /// The path of the last forward (-1 for an empty loss).
    int32_t path() const noexcept { return bt_loss_path(p_); }
    /// The leading [k, k] block of C into c (bt_loss_correlation).
    result try_correlation(tensor_ref c) noexcept { return result::from(bt_loss_correlation(p_, c.get())); }
    /// The loss of the ranks' global batch over c, collective; null: one process (bt_loss_set_comm).
    result try_set_comm(comm *c) noexcept { return result::from(bt_loss_set_comm(p_, c ? c->get() : nullptr)); }

#if BARLOW_EXCEPTIONS
    void set_comm(comm *c) { check(try_set_comm(c)); }
    static loss create(const config &cfg)
    {
        loss l;
        check(try_create(l, cfg));
        return l;
    }
    static loss create()
    {
        loss l;
        check(try_create(l));
        return l;
    }
    double forward(const_tensor_ref za, const_tensor_ref zb)
    {
        double v = 0;
        check(try_forward(za, zb, v));
        return v;
    }
    void backward(tensor_ref dza, tensor_ref dzb) { check(try_backward(dza, dzb)); }
    loss_terms terms() const
    {
        loss_terms t = {0, 0};
        check(try_terms(t));
        return t;
    }
    void set_path(int32_t p) { check(try_set_path(p)); }
    void correlation(tensor_ref c) { check(try_correlation(c)); }
#endif

private:
    static result make(loss &out, const bt_config *cfg) noexcept
    {
        bt_loss *l = nullptr;
        result r = result::from(bt_loss_create(&l, cfg));
        if (r.ok())
            out.reset(l);
        return r;
    }
};

// ---------------------------------------------------------------------------
// Cross-entropy
// ---------------------------------------------------------------------------

/// What a cross-entropy forward gives: the mean loss and the top-1 / top-5 hits.
struct xent_result {
    double mean_loss;
    int64_t top1_correct;
    int64_t top5_correct;
};

/// Softmax cross-entropy for linear probes (bt_xent).
class xent : public detail::owner<bt_xent, bt_xent_free> {
public:
    xent() noexcept {}
    explicit xent(bt_xent *x) noexcept : owner(x) {}

    static result try_create(xent &out, const config &cfg) noexcept { return make(out, cfg.get()); }
    static result try_create(xent &out) noexcept { return make(out, nullptr); }
    /// Forward of logits [N, K] with labels[0..n-1]; n must be N (bt_xent_forward).
    result try_forward(const_tensor_ref logits, const int32_t *labels, std::size_t n,
                       xent_result &out) noexcept
    {
        int64_t rows = logits.dim(0);
        if (rows >= 0 && static_cast<std::size_t>(rows) != n)
            return detail::wrapper_error(BT_E_SHAPE,
                                         "barlow::xent::forward: the label count differs from logits' rows");
        xent_result x = {0, 0, 0};
        result r = result::from(
            bt_xent_forward(p_, logits.get(), labels, &x.mean_loss, &x.top1_correct, &x.top5_correct));
        if (r.ok())
            out = x;
        return r;
    }
    result try_forward(const_tensor_ref logits, const std::vector<int32_t> &labels, xent_result &out) noexcept
    {
        return try_forward(logits, labels.data(), labels.size(), out);
    }
    /// d(mean loss)/d logits of the last forward, overwritten (bt_xent_backward).
    result try_backward(tensor_ref dlogits) noexcept { return result::from(bt_xent_backward(p_, dlogits.get())); }

#if BARLOW_EXCEPTIONS
    static xent create(const config &cfg)
    {
        xent x;
        check(try_create(x, cfg));
        return x;
    }
    static xent create()
    {
        xent x;
        check(try_create(x));
        return x;
    }
    xent_result forward(const_tensor_ref logits, const std::vector<int32_t> &labels)
    {
        xent_result x = {0, 0, 0};
        check(try_forward(logits, labels, x));
        return x;
    }
    xent_result forward(const_tensor_ref logits, const int32_t *labels, std::size_t n)
    {
        xent_result x = {0, 0, 0};
        check(try_forward(logits, labels, n, x));
        return x;
    }
    void backward(tensor_ref dlogits) { check(try_backward(dlogits)); }
#endif

private:
    static result make(xent &out, const bt_config *cfg) noexcept
    {
        bt_xent *x = nullptr;
        result r = result::from(bt_xent_create(&x, cfg));
        if (r.ok())
            out.reset(x);
        return r;
    }
};

// ---------------------------------------------------------------------------
// Augmentation
// ---------------------------------------------------------------------------

/// The random state of an augmentation pipeline (bt_augment_get_state).
struct augment_state {
    uint64_t seed;
    uint64_t calls;
};

/// The Barlow Twins augmentation over host uint8 images, HWC with packed
/// rows (bt_augment). Images are given as pointers with one height and
/// width each, or all of one size.
class augment : public detail::owner<bt_augment, bt_augment_free> {
public:
    augment() noexcept {}
    explicit augment(bt_augment *a) noexcept : owner(a) {}

    static result try_create(augment &out, const config &cfg) noexcept { return make(out, cfg.get()); }
    static result try_create(augment &out) noexcept { return make(out, nullptr); }

    /// out.size() augmented views of n images (bt_augment_views).
    result try_views(const uint8_t *const *images, const int32_t *heights, const int32_t *widths,
                     int32_t n, int32_t channels, const tensor_list &out) noexcept
    {
        if (out.too_many())
            return detail::too_many_views();
        return result::from(bt_augment_views(p_, n, images, heights, widths, channels,
                                             static_cast<int32_t>(out.size()), out.data()));
    }
    result try_views(const std::vector<const uint8_t *> &images, const std::vector<int32_t> &heights,
                     const std::vector<int32_t> &widths, int32_t channels, const tensor_list &out) noexcept
    {
        int32_t n = 0;
        result r = count(images, heights, widths, n);
        return r.ok() ? try_views(images.data(), heights.data(), widths.data(), n, channels, out) : r;
    }
    /// The same for images all height x width.
    result try_views(const std::vector<const uint8_t *> &images, int32_t height, int32_t width,
                     int32_t channels, const tensor_list &out)
    {
        std::vector<int32_t> h(images.size(), height), w(images.size(), width);
        return try_views(images, h, w, channels, out);
    }
    /// The deterministic evaluation transform into out (bt_augment_eval).
    result try_eval(const uint8_t *const *images, const int32_t *heights, const int32_t *widths, int32_t n,
                    int32_t channels, tensor_ref out) noexcept
    {
        return result::from(bt_augment_eval(p_, n, images, heights, widths, channels, out.get()));
    }
    result try_eval(const std::vector<const uint8_t *> &images, const std::vector<int32_t> &heights,
                    const std::vector<int32_t> &widths, int32_t channels, tensor_ref out) noexcept
    {
        int32_t n = 0;
        result r = count(images, heights, widths, n);
        return r.ok() ? try_eval(images.data(), heights.data(), widths.data(), n, channels, out) : r;
    }
    result try_eval(const std::vector<const uint8_t *> &images, int32_t height, int32_t width,
                    int32_t channels, tensor_ref out)
    {
        std::vector<int32_t> h(images.size(), height), w(images.size(), width);
        return try_eval(images, h, w, channels, out);
    }
    /// Views of images in any BT_PIXELS_* layout with row strides (null: packed), keyed by the
    /// global index of the first image (bt_augment_views_at).
    result try_views_at(int64_t first_index, const uint8_t *const *images, const int32_t *heights,
                        const int32_t *widths, const int64_t *strides, int32_t n, int32_t format,
                        const tensor_list &out) noexcept
    {
        if (out.too_many())
            return detail::too_many_views();
        return result::from(bt_augment_views_at(p_, first_index, n, images, heights, widths, strides,
                                                format, static_cast<int32_t>(out.size()), out.data()));
    }
    /// The evaluation transform for any BT_PIXELS_* layout with row strides (bt_augment_eval_ex).
    result try_eval_ex(const uint8_t *const *images, const int32_t *heights, const int32_t *widths,
                       const int64_t *strides, int32_t n, int32_t format, tensor_ref out) noexcept
    {
        return result::from(bt_augment_eval_ex(p_, n, images, heights, widths, strides, format, out.get()));
    }
    /// Output side of view `view` (0: aug.view1.size; -1 on failure).
    int32_t output_size(int32_t view) const noexcept { return bt_augment_output_size(p_, view); }
    result try_get_state(augment_state &out) const noexcept
    {
        augment_state s = {0, 0};
        result r = result::from(bt_augment_get_state(p_, &s.seed, &s.calls));
        if (r.ok())
            out = s;
        return r;
    }
    result try_set_state(const augment_state &s) noexcept
    {
        return result::from(bt_augment_set_state(p_, s.seed, s.calls));
    }

#if BARLOW_EXCEPTIONS
    static augment create(const config &cfg)
    {
        augment a;
        check(try_create(a, cfg));
        return a;
    }
    static augment create()
    {
        augment a;
        check(try_create(a));
        return a;
    }
    void views(const uint8_t *const *images, const int32_t *heights, const int32_t *widths, int32_t n,
               int32_t channels, const tensor_list &out)
    {
        check(try_views(images, heights, widths, n, channels, out));
    }
    void views(const std::vector<const uint8_t *> &images, const std::vector<int32_t> &heights,
               const std::vector<int32_t> &widths, int32_t channels, const tensor_list &out)
    {
        check(try_views(images, heights, widths, channels, out));
    }
    void views(const std::vector<const uint8_t *> &images, int32_t height, int32_t width, int32_t channels,
               const tensor_list &out)
    {
        check(try_views(images, height, width, channels, out));
    }
    void eval(const uint8_t *const *images, const int32_t *heights, const int32_t *widths, int32_t n,
              int32_t channels, tensor_ref out)
    {
        check(try_eval(images, heights, widths, n, channels, out));
    }
    void eval(const std::vector<const uint8_t *> &images, const std::vector<int32_t> &heights,
              const std::vector<int32_t> &widths, int32_t channels, tensor_ref out)
    {
        check(try_eval(images, heights, widths, channels, out));
    }
    void eval(const std::vector<const uint8_t *> &images, int32_t height, int32_t width, int32_t channels,
              tensor_ref out)
    {
        check(try_eval(images, height, width, channels, out));
    }
    void views_at(int64_t first_index, const uint8_t *const *images, const int32_t *heights,
                  const int32_t *widths, const int64_t *strides, int32_t n, int32_t format,
                  const tensor_list &out)
    {
        check(try_views_at(first_index, images, heights, widths, strides, n, format, out));
    }
    void eval_ex(const uint8_t *const *images, const int32_t *heights, const int32_t *widths,
                 const int64_t *strides, int32_t n, int32_t format, tensor_ref out)
    {
        check(try_eval_ex(images, heights, widths, strides, n, format, out));
    }
    augment_state get_state() const
    {
        augment_state s = {0, 0};
        check(try_get_state(s));
        return s;
    }
    void set_state(const augment_state &s) { check(try_set_state(s)); }
#endif

private:
    static result make(augment &out, const bt_config *cfg) noexcept
    {
        bt_augment *a = nullptr;
        result r = result::from(bt_augment_create(&a, cfg));
        if (r.ok())
            out.reset(a);
        return r;
    }
    static result count(const std::vector<const uint8_t *> &images, const std::vector<int32_t> &heights,
                        const std::vector<int32_t> &widths, int32_t &n) noexcept
    {
        if (heights.size() != images.size() || widths.size() != images.size())
            return detail::wrapper_error(BT_E_INVALID_ARG,
                                         "barlow::augment: images, heights and widths differ in length");
        if (!detail::fits_i32(images.size()))
            return detail::wrapper_error(BT_E_INVALID_ARG, "barlow::augment: too many images");
        n = static_cast<int32_t>(images.size());
        return result();
    }
};

// ---------------------------------------------------------------------------
// Optimizers
// ---------------------------------------------------------------------------

/// An optimizer (lars, sgd, adamw) with its schedule (bt_optim). It borrows
/// the tensors, layers and models added to it: they must outlive it.
class optim : public detail::owner<bt_optim, bt_optim_free> {
public:
    optim() noexcept {}
    explicit optim(bt_optim *o) noexcept : owner(o) {}

    static result try_create(optim &out, const config &cfg) noexcept { return make(out, cfg.get()); }
    static result try_create(optim &out) noexcept { return make(out, nullptr); }
    /// Add one (value, grad) pair named `name` ("" gives "param.<index>") (bt_optim_add_tensor).
    result try_add_tensor(tensor_ref value, tensor_ref grad, const std::string &name = std::string()) noexcept
    {
        return result::from(bt_optim_add_tensor(p_, value.get(), grad.get(), name.empty() ? nullptr : name.c_str()));
    }
    /// Add every trainable tensor of a layer (bt_optim_add_layer).
    result try_add_layer(layer &l) noexcept { return result::from(bt_optim_add_layer(p_, l.get())); }
    /// Add every trainable tensor of a model (bt_optim_add_model).
    result try_add_model(model &m) noexcept { return result::from(bt_optim_add_model(p_, m.get())); }
    /// One update, then the step count + 1 (bt_optim_step).
    result try_step() noexcept { return result::from(bt_optim_step(p_)); }
    /// Steps taken (-1 for an empty optimizer).
    int64_t step_count() const noexcept { return bt_optim_step_count(p_); }
    /// The rate the next step applies to group 0 or 1 (-1 on failure).
    double lr(int32_t group = 0) const noexcept { return bt_optim_lr(p_, group); }

#if BARLOW_EXCEPTIONS
    static optim create(const config &cfg)
    {
        optim o;
        check(try_create(o, cfg));
        return o;
    }
    static optim create()
    {
        optim o;
        check(try_create(o));
        return o;
    }
    void add_tensor(tensor_ref value, tensor_ref grad, const std::string &name = std::string())
    {
        check(try_add_tensor(value, grad, name));
    }
    void add_layer(layer &l) { check(try_add_layer(l)); }
    void add_model(model &m) { check(try_add_model(m)); }
    void step() { check(try_step()); }
#endif

private:
    static result make(optim &out, const bt_config *cfg) noexcept
    {
        bt_optim *o = nullptr;
        result r = result::from(bt_optim_create(&o, cfg));
        if (r.ok())
            out.reset(o);
        return r;
    }
};

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

/// Safetensors checkpoints of a model and, optionally, its optimizer and
/// augmentation state (bt_checkpoint_*). o and a may be NULL.
namespace checkpoint {

namespace impl {
inline bt_optim *raw(optim *o) noexcept { return o ? o->get() : nullptr; }
inline bt_augment *raw(augment *a) noexcept { return a ? a->get() : nullptr; }
inline const char *map(const std::string &m) noexcept { return m.empty() ? nullptr : m.c_str(); }
} // namespace impl

/// Write m, o and a to path atomically (bt_checkpoint_save).
inline result try_save(const std::string &path, model &m, optim *o = nullptr, augment *a = nullptr) noexcept
{
    return result::from(bt_checkpoint_save(path.c_str(), m.get(), impl::raw(o), impl::raw(a)));
}
/// bt_checkpoint_save_ex: prefix_map "" means none; flags BT_SAVE_MAPPED_ONLY or 0.
inline result try_save_ex(const std::string &path, model &m, optim *o, augment *a,
                          const std::string &prefix_map, uint32_t flags) noexcept
{
    return result::from(bt_checkpoint_save_ex(path.c_str(), m.get(), impl::raw(o), impl::raw(a),
                                              impl::map(prefix_map), flags));
}
/// Load path into m, o and a, all validated first (bt_checkpoint_load).
inline result try_load(const std::string &path, model &m, optim *o = nullptr, augment *a = nullptr) noexcept
{
    return result::from(bt_checkpoint_load(path.c_str(), m.get(), impl::raw(o), impl::raw(a)));
}
/// bt_checkpoint_load_ex: prefix_map "" means none; flags BT_LOAD_PARTIAL,
/// BT_LOAD_IGNORE_EXTRA or 0; the report lines go to *report when given.
inline result try_load_ex(const std::string &path, model &m, optim *o, augment *a,
                          const std::string &prefix_map, uint32_t flags, std::string *report = nullptr)
{
    std::vector<char> buf(report ? 65536 : 1);
    result r = result::from(bt_checkpoint_load_ex(path.c_str(), m.get(), impl::raw(o), impl::raw(a),
                                                  impl::map(prefix_map), flags, report ? buf.data() : nullptr,
                                                  report ? buf.size() : 0));
    if (r.ok() && report)
        *report = buf.data();
    return r;
}
/// The value of a metadata key of path's header (bt_checkpoint_metadata).
inline result try_metadata(const std::string &path, const std::string &key, std::string &value)
{
    std::vector<char> buf(256);
    for (;;) {
        bt_status st = bt_checkpoint_metadata(path.c_str(), key.c_str(), buf.data(), buf.size());
        if (st == BT_OK) {
            value = buf.data();
            return result();
        }
        if (st != BT_E_INVALID_ARG || buf.size() >= (1u << 24))
            return result::from(st);
        buf.resize(buf.size() * 16);
    }
}

#if BARLOW_EXCEPTIONS
inline void save(const std::string &path, model &m, optim *o = nullptr, augment *a = nullptr)
{
    check(try_save(path, m, o, a));
}
inline void save_ex(const std::string &path, model &m, optim *o, augment *a, const std::string &prefix_map,
                    uint32_t flags)
{
    check(try_save_ex(path, m, o, a, prefix_map, flags));
}
inline void load(const std::string &path, model &m, optim *o = nullptr, augment *a = nullptr)
{
    check(try_load(path, m, o, a));
}
/// Returns the report ("loaded L of N tensors, ...").
inline std::string load_ex(const std::string &path, model &m, optim *o, augment *a,
                           const std::string &prefix_map, uint32_t flags)
{
    std::string rep;
    check(try_load_ex(path, m, o, a, prefix_map, flags, &rep));
    return rep;
}
inline std::string metadata(const std::string &path, const std::string &key)
{
    std::string v;
    check(try_metadata(path, key, v));
    return v;
}
#endif

} // namespace checkpoint

} // namespace barlow

#undef BARLOW_NODISCARD

#endif // BARLOW_HPP
