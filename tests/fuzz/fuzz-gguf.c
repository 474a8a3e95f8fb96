/* SPDX-License-Identifier: MIT */
/* llmd reads the header of every model file it is given, before llama-server does: a file
 * that is not what it claims must be refused (-EBADMSG, or -E2BIG past a cap), never crash, hang or allocate what
 * its counts ask for. The input is the file. Besides not crashing, what is read must hold
 * together: */
#include <sys/mman.h>

#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_close_ int fd = memfd_create("fuzz-gguf", MFD_CLOEXEC);
        GgufEstimateParams p = { .n_gpu_layers = -1 };
        GgufInfo i;
        int r;

        if (fd < 0 || write(fd, data, size) != (ssize_t) size) {
                return 0;
        }
        r = gguf_read_fd(fd, &i);
        if (r < 0) {
                /* A memfd reads: only the content can be wrong, or past a cap (gguf.h). */
                if (r != -EBADMSG && r != -E2BIG) {
                        __builtin_trap();
                }
                return 0;
        }
        /* tensors lie within the file, layers among the tensors */
        if (!i.arch || i.file_bytes != size || i.tensor_bytes > i.file_bytes ||
            i.layer_bytes > i.tensor_bytes) {
                __builtin_trap();
        }
        /* offloading more never needs less */
        uint64_t all = gguf_estimate_gpu_bytes(&i, &p);
        p.n_gpu_layers = (int64_t) (i.n_layer / 2);
        if (gguf_estimate_gpu_bytes(&i, &p) > all) {
                __builtin_trap();
        }
        gguf_info_done(&i);
        return 0;
}
