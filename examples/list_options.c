/* list_options.c - print every libbarlow option as a Markdown table
 * (docs/options.md is this program's output; `make check` keeps them equal). */
#include <barlow.h>
#include <stdio.h>

/* Markdown tables split cells at '|': escape it. */
static void cell(const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            putchar('\\');
        putchar(*s);
    }
}

int main(void)
{
    int32_t i, n = bt_config_option_count();
    printf("# Options\n\n");
    printf("Set with `bt_config_set(cfg, name, value)`; read with `bt_config_get`. Every `aug.X` but\n"
           "`aug.preset` can also be set for one view as `aug.view1.X` or `aug.view2.X`; `aug.preset`\n"
           "changes the defaults of the `aug.*` options (see `include/barlow.h`). Integer lists use\n"
           "dashes (`8192-8192-8192`), real lists commas (`0.485,0.456,0.406`).\n\n");
    printf("| name | type | default | range | description |\n|---|---|---|---|---|\n");
    for (i = 0; i < n; i++) {
        const char *name, *type, *def, *range, *help;
        if (bt_config_option(i, &name, &type, &def, &range, &help) != BT_OK)
            return 1;
        printf("| `%s` | %s | `%s` | ", name, type, def);
        cell(range);
        printf(" | %s |\n", help);
    }
    printf("\nRead-only: `build.version`, `build.blas`, `build.blas_core`, `build.blas_config`, "
           "`build.threads`.\n");
    return 0;
}
