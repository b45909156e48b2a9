/* minimal.c - the smallest libbarlow program: create a tensor, set an option,
 * read the build information, and show how errors are reported.
 *
 *   cc minimal.c $(pkg-config --cflags --libs barlow) -o minimal
 */
#include <barlow.h>
#include <stdio.h>

int main(void)
{
    int64_t shape[2] = {2, 3};
    bt_tensor *t = NULL;
    bt_config *cfg = NULL;
    char lambda[32];
    bt_status st;

    if (bt_version_number() != BT_VERSION_NUMBER)
        fprintf(stderr, "warning: header %d, library %d\n", BT_VERSION_NUMBER, bt_version_number());
    printf("%s\n", bt_build_info());

    if (bt_tensor_create(&t, 2, shape) != BT_OK || bt_config_create(&cfg) != BT_OK) {
        fprintf(stderr, "error: %s\n", bt_last_error());
        return 1;
    }
    bt_tensor_data(t)[0] = 1.5f;
    printf("tensor [%lld, %lld], first element %.1f\n", (long long)bt_tensor_dim(t, 0),
           (long long)bt_tensor_dim(t, 1), bt_tensor_data(t)[0]);

    bt_config_set(cfg, "loss.lambda", "0.004");
    bt_config_get(cfg, "loss.lambda", lambda, sizeof lambda);
    printf("loss.lambda = %s\n", lambda);

    /* A bad value is refused with a status and a message; nothing changes. */
    st = bt_config_set(cfg, "loss.lambda", "-1");
    printf("setting loss.lambda=-1: %s (%s)\n", bt_status_string(st), bt_last_error());

    bt_config_free(cfg);
    bt_tensor_free(t);
    return 0;
}
