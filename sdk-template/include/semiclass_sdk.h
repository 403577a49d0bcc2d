/*
 * semiclass SDK: classify images with the model of this package.
 *
 * Link with -lsemiclass_sdk (lib/libsemiclass_sdk.so); the library loads the
 * ONNX Runtime shipped in the package's lib/ folder by itself.
 *
 * Every function that can fail returns a status (SEMICLASS_OK on success)
 * and leaves a message in semiclass_last_error(). No function keeps the
 * pointers it is given. A model handle may be used from several threads.
 */
#ifndef SEMICLASS_SDK_H
#define SEMICLASS_SDK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. */
#define SEMICLASS_OK 0
#define SEMICLASS_INVALID_ARGUMENT 1 /* null pointer, top_k of 0, text not UTF-8 */
#define SEMICLASS_PACKAGE 2          /* package files missing or changed */
#define SEMICLASS_LICENSE 3          /* no valid license: run `bin/infer activate` */
#define SEMICLASS_IMAGE 4            /* the image cannot be decoded */
#define SEMICLASS_RUNTIME 5          /* ONNX Runtime failed */
#define SEMICLASS_INTERNAL 6         /* a bug in the SDK: please report it */

/* An open model. */
typedef struct SemiclassModel SemiclassModel;

/* One class of an answer; `name` lives as long as the model handle. */
typedef struct SemiclassPrediction {
    uint32_t class_id;
    float score; /* softmax probability */
    const char *name;
} SemiclassPrediction;

/* The SDK's version, e.g. "0.1.0". */
const char *semiclass_version(void);

/* Why the last call on this thread failed; NULL after a success. Valid
 * until the next SDK call on this thread. */
const char *semiclass_last_error(void);

/* Opens the package in `package_dir`: checks its files against the manifest
 * and the installed license (this package, this machine, its dates), then
 * loads the model into *out. `activation_dir` is where `infer activate`
 * installed the license; NULL for its default folder. A cuda-x86_64 package
 * whose GPU cannot be used (no NVIDIA driver, CUDA or cuDNN) fails with
 * SEMICLASS_RUNTIME and says what is missing, unless the environment has
 * SEMICLASS_ALLOW_CPU_FALLBACK=1: then it runs on the CPU, with a warning on
 * stderr. */
int semiclass_open(const char *package_dir, const char *activation_dir, SemiclassModel **out);

/* Classifies one encoded image (JPEG, PNG, BMP, WebP, GIF, TIFF) of
 * `image_len` bytes: writes the `top_k` most probable classes, best first,
 * to `out` (room for `top_k` entries) and how many it wrote to *out_len
 * (fewer when the model has fewer classes). */
int semiclass_predict(const SemiclassModel *model, const uint8_t *image, size_t image_len,
                      size_t top_k, SemiclassPrediction *out, size_t *out_len);

/* The number of classes; 0 for NULL. */
size_t semiclass_num_classes(const SemiclassModel *model);

/* The name of a class; NULL for NULL or an unknown id. */
const char *semiclass_class_name(const SemiclassModel *model, size_t class_id);

/* Frees a model; NULL is allowed. */
void semiclass_close(SemiclassModel *model);

#ifdef __cplusplus
}
#endif

#endif /* SEMICLASS_SDK_H */
