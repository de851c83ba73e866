/* Built with nothing but pkg-config's flags (ffi/tests/pkg_config.rs, ffi/tests/package.rs):
 * prints the library's version and fails when the header and the library disagree. */
#include <stdio.h>

#include <ringrelay.h>

int main(void) {
    printf("%s\n", ringrelay_version());
    return ringrelay_version_number() == RINGRELAY_VERSION_NUMBER ? 0 : 1;
}
