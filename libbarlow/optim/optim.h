/*
 * optim.h - private interface of the optimizer (optim.c, optim_schedule.c)
 * for the checkpoint module and the tests.
 *
 * The optimizer state is a list of float tensors owned by the optimizer, one
 * or two per added parameter, in the order the parameters were added:
 *   lars, sgd:  "optim.<param name>.momentum"
 *   adamw:      "optim.<param name>.exp_avg", "optim.<param name>.exp_avg_sq"
 * each with its parameter's shape, plus the step count. Restoring every state
 * tensor and the step count into an optimizer built with the same options
 * and the same parameters makes the following steps bit-identical to those
 * of the optimizer they were saved from.
 */
#ifndef BARLOW_OPTIM_H
#define BARLOW_OPTIM_H

#include "common/internal.h"

/* Number of state tensors (0 before any parameter is added), or -1 with
 * bt_last_error set for a bad handle. */
BTI_HIDDEN int32_t bti_optim_state_count(const bt_optim *o);

/* State tensor i: *name gets its checkpoint name (borrowed, valid while o
 * lives), *t the tensor (owned by o: read it, or write its data to restore
 * it; bt_tensor_free refuses it). name or t may be NULL.
 * Returns BT_OK, BT_E_MISUSE, BT_E_INVALID_ARG (i out of range). */
BTI_HIDDEN bt_status bti_optim_state(bt_optim *o, int32_t i, const char **name, bt_tensor **t);

/* Number of added parameter tensors, or -1 with bt_last_error set. */
BTI_HIDDEN int32_t bti_optim_tensor_count(const bt_optim *o);

/* Remove the parameters added after the first `keep` ones (with their state),
 * so that attaching a whole layer or model is all or nothing. */
BTI_HIDDEN void bti_optim_truncate(bt_optim *o, int32_t keep);

/* Set the step count (what bt_optim_step_count returns and the schedule and
 * AdamW's bias correction use). Returns BT_OK, BT_E_MISUSE,
 * BT_E_INVALID_ARG (negative). */
BTI_HIDDEN bt_status bti_optim_set_step(bt_optim *o, int64_t step);

/* "lars", "sgd" or "adamw" (static), or NULL for a bad handle: the
 * checkpoint stores it so that state is never loaded into another kind. */
BTI_HIDDEN const char *bti_optim_kind_name(const bt_optim *o);

/* The schedule of barlow.h as a pure function: the rate of step s for a
 * group whose base rate (batch_size/256 x lr) is base. schedule_cosine 0
 * means constant after the warm-up. */
BTI_HIDDEN double bti_optim_schedule(double base, int64_t s, int64_t warmup_steps,
                                     int64_t total_steps, int schedule_cosine,
                                     double final_lr_ratio);

#endif /* BARLOW_OPTIM_H */
