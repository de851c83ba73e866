/* A panic inside the library comes back as RINGRELAY_STATUS_PANIC with its words in the last
 * error, and the process and the library go on working. Usage: panic */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, poll under -std=c11 */

#include "check.h"

/* Exported only by builds with the `test-hooks` feature (the tests'); not in the header. */
ringrelay_status ringrelay_test_panic(void);

int main(void) {
    CHECK(ringrelay_test_panic() == RINGRELAY_STATUS_PANIC);
    char err[256];
    size_t full = ringrelay_last_error(err, sizeof err);
    CHECK(full > 0 && full < sizeof err);
    CHECK(strstr(err, "ringrelay_test_panic was called") != NULL);
    /* A short buffer: cut, NUL-terminated, and the full length returned. */
    char short_buf[8];
    CHECK(ringrelay_last_error(short_buf, sizeof short_buf) == full);
    CHECK(strlen(short_buf) == sizeof short_buf - 1);
    /* Twice: the boundary holds every time. */
    CHECK(ringrelay_test_panic() == RINGRELAY_STATUS_PANIC);
    CHECK(strcmp(ringrelay_status_str(RINGRELAY_STATUS_PANIC), "RINGRELAY_STATUS_PANIC") == 0);
    printf("PASS panic\n");
    return 0;
}
