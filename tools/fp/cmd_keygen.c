/* fp keygen --out DIR: a fresh Ed25519 identity (DIR/identity.pub, identity.key 0600). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "fedproxy/identity.h"

int fp_cmd_keygen(int argc, char **argv)
{
    const char *out = fp_cli_opt(argc, argv, "--out");
    if (fp_cli_flag(argc, argv, "--help") || !out) {
        fprintf(out ? stdout : stderr, "usage: fp keygen --out DIR\n"
                                       "Writes DIR/identity.pub (hex public key) and DIR/identity.key (0600).\n");
        return out ? 0 : 2;
    }
    fp_identity id;
    int rc = fp_identity_keygen(&id);
    if (!rc)
        rc = fp_identity_save(&id, out);
    char hex[FP_IDENTITY_PUBLICKEY_HEXBYTES];
    if (!rc)
        rc = fp_hex_encode(hex, sizeof hex, id.pk, sizeof id.pk);
    fp_identity_wipe(&id);
    if (rc)
        return fp_cli_fail("keygen", rc);
    printf("%s\n", hex);
    return 0;
}
