/*
 * fuzz_replay.c - runs the libFuzzer target without libFuzzer, so that
 * `make check` exercises the parser on every build (and under ASan/UBSan
 * with --enable-sanitizers).
 *
 * Usage: fuzz-dns-replay [FILE|DIR]...   (default: $srcdir's fuzz-corpus)
 *
 * Each corpus packet is fed as is, then every prefix of it (truncation),
 * then with each byte in turn replaced by a few telling values (0x00, 0xff,
 * 0xc0 = a compression pointer, the byte's complement): a small,
 * deterministic mutation pass over the spots where parsers go wrong.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long runs;

static void run(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) abort();
    memcpy(copy, data, size);
    LLVMFuzzerTestOneInput(copy, size);
    free(copy);
    runs++;
}

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t data[9000];
    size_t size = fread(data, 1, sizeof(data), f);
    fclose(f);

    static const uint8_t values[] = {0x00, 0xff, 0xc0};
    run(data, size);
    for (size_t n = 0; n < size; n++) run(data, n);
    for (size_t i = 0; i < size; i++) {
        uint8_t orig = data[i];
        for (size_t v = 0; v < sizeof(values); v++) {
            data[i] = values[v];
            run(data, size);
        }
        data[i] = (uint8_t)~orig;
        run(data, size);
        data[i] = orig;
    }
    return 0;
}

static int replay(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return replay_file(path);

    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    int rc = 0, files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
        if (replay_file(p) != 0) rc = -1;
        files++;
    }
    closedir(d);
    if (files == 0) {
        fprintf(stderr, "%s: empty corpus\n", path);
        rc = -1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            if (replay(argv[i]) != 0) rc = 1;
    } else {
        const char *srcdir = getenv("srcdir");
        char p[4096];
        snprintf(p, sizeof(p), "%s/plugins/nameresolution-mdns/fuzz-corpus",
                 srcdir ? srcdir : ".");
        if (replay(p) != 0) rc = 1;
    }
    printf("%lu inputs replayed\n", runs);
    return rc;
}
