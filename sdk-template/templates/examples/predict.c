/*
 * Classify images with the {{arch}} model of package {{package_id}}
 * through the SDK's C library.
 *
 * Build from the package folder into a folder of your own (the SDK refuses
 * a package holding files its manifest does not list), then run:
 *   mkdir -p ../predict-example
 *   cc -I include -o ../predict-example/predict examples/predict.c \
 *       -L lib -lsemiclass_sdk -Wl,-rpath,"$PWD/lib"
 *   ../predict-example/predict . image.jpg [more images...]
 *
 * Activate the package first (bin/infer activate, see README.md).
 */
#include <stdio.h>
#include <stdlib.h>

#include "semiclass_sdk.h"

#define TOP_K 5

/* The whole file in a malloc'ed buffer; NULL on error. */
static unsigned char *read_file(const char *path, size_t *len) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) return NULL;
    unsigned char *bytes = NULL;
    long size = -1;
    if (fseek(file, 0, SEEK_END) == 0) size = ftell(file);
    if (size >= 0 && fseek(file, 0, SEEK_SET) == 0) bytes = malloc(size > 0 ? (size_t)size : 1);
    if (bytes != NULL && fread(bytes, 1, (size_t)size, file) != (size_t)size) {
        free(bytes);
        bytes = NULL;
    }
    fclose(file);
    *len = (size_t)size;
    return bytes;
}

/* Prints the top classes of one image; returns 0 on success. */
static int classify(const SemiclassModel *model, const char *path) {
    size_t len = 0;
    unsigned char *bytes = read_file(path, &len);
    if (bytes == NULL) {
        perror(path);
        return 1;
    }
    SemiclassPrediction top[TOP_K];
    size_t count = 0;
    int status = semiclass_predict(model, bytes, len, TOP_K, top, &count);
    free(bytes);
    if (status != SEMICLASS_OK) {
        fprintf(stderr, "error: %s: %s\n", path, semiclass_last_error());
        return 1;
    }
    printf("%s\n", path);
    for (size_t k = 0; k < count; k++) {
        printf("  %zu. %s (class %u) %.4f\n", k + 1, top[k].name, top[k].class_id, top[k].score);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PACKAGE_DIR IMAGE...\n", argv[0]);
        return 2;
    }
    SemiclassModel *model = NULL;
    if (semiclass_open(argv[1], NULL, &model) != SEMICLASS_OK) {
        fprintf(stderr, "error: %s\n", semiclass_last_error());
        return 2;
    }
    fprintf(stderr, "semiclass SDK %s, %zu classes\n", semiclass_version(),
            semiclass_num_classes(model));
    int failed = 0;
    for (int i = 2; i < argc; i++) failed |= classify(model, argv[i]);
    semiclass_close(model);
    return failed;
}
