/* model.h - private access to a model's tensors (checkpoints, optimizer). */
#ifndef BARLOW_MODEL_H
#define BARLOW_MODEL_H

#include "common/internal.h"

BTI_HIDDEN int bti_model_tensor_count(const bt_model *m);
/* The model.* options it was created with, as "name=value" lines. */
BTI_HIDDEN const char *bti_model_options(const bt_model *m);
/* Its CPU level (common/cpu.h). */
BTI_HIDDEN int bti_model_level(const bt_model *m);
BTI_HIDDEN const char *bti_model_tensor_name(const bt_model *m, int i);
BTI_HIDDEN bt_tensor *bti_model_tensor_value(bt_model *m, int i);
BTI_HIDDEN bt_tensor *bti_model_tensor_grad(bt_model *m, int i);

/* Tests: 0 runs every layer step on its own (no BatchNorm+ReLU or BatchNorm+add+ReLU
 * fusion), 1 (the default) fuses. Drops the planned buffers and the cached forward. */
BTI_HIDDEN void bti_model_set_fusion(bt_model *m, int on);

/* Tests: the bytes a training step has reserved (the training plan's arena and
 * the layers' shared scratch), the counterpart of bt_model_workspace_bytes. */
BTI_HIDDEN size_t bti_model_workspace_reserved(const bt_model *m);

#endif
