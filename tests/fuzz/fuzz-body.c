/*
 * libFuzzer target: the body decoder.  The input is written as a segment
 * file holding one blob (header + stored bytes) and read back through
 * lmbox_body_read_all() with a record that matches the blob header, so the
 * fuzzer reaches the inflate and checksum paths.  Any outcome but a crash
 * or a success with bytes that do not match the checksum is fine.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "lmbox-private.h"

#define FUZZ_SEG_ID 0x7fff0001u

static struct lmbox_store *store;
static char seg_path[4096];
static char dir_template[] = "/tmp/lmbox-fuzz-body.XXXXXX";

static void cleanup(void)
{
	char cmd[256];

	lmbox_store_close(&store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir_template);
	if (system(cmd) != 0) { /* best effort */ }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct lmbox_store_opts opts;
	const char *err;

	(void)argc; (void)argv;
	if (mkdtemp(dir_template) == NULL)
		abort();
	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_CREATE;
	opts.fsync = LMBOX_FSYNC_NEVER;
	if (lmbox_store_open(dir_template, &opts, &store, &err) < 0) {
		fprintf(stderr, "open: %s\n", err);
		abort();
	}
	lmbox_seg_path(store, FUZZ_SEG_ID, seg_path, sizeof(seg_path));
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lmbox_blob_hdr hdr;
	struct lmbox_msg_meta meta;
	unsigned char *out = NULL;
	size_t out_size;
	int fd;

	memset(&meta, 0, sizeof(meta));
	if (lmbox_blob_hdr_decode(data, size < LMBOX_BLOB_HDR_SIZE ? size :
				  LMBOX_BLOB_HDR_SIZE, &hdr) == 0) {
		meta.codec = hdr.codec;
		meta.phys_size = hdr.phys_size;
		meta.stored_size = hdr.stored_size;
		meta.checksum = hdr.checksum;
	} else {
		meta.codec = LMBOX_CODEC_DEFLATE;
		meta.stored_size = size;
	}
	/* keep allocations bounded: the decoder trusts sizes it has checked
	 * against the record, and records come from LMDB */
	if (meta.phys_size > 16 * 1024 * 1024)
		return 0;
	meta.folder_id = 1;
	meta.uid = 1;
	meta.seg_id = FUZZ_SEG_ID;
	meta.seg_offset = 0;
	meta.uidl = "x";

	fd = open(seg_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);

	if (lmbox_body_read_all(store, &meta, &out, &out_size) == 0) {
		/* success means the bytes are what the record promised */
		if (out_size != meta.phys_size ||
		    (uint32_t)crc32(0, out, (uInt)out_size) != meta.checksum)
			abort();
	}
	free(out);
	return 0;
}
