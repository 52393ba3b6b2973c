/*
 * test-message: messages survive a save/read round trip byte for byte,
 * whatever their line endings, with the sizes, checksum, UIDL, flags and
 * keywords recorded at save time.
 */
#include <zlib.h>

#include "lmbox-format.h"
#include "test-common.h"

static uint32_t folder;

/* The CRLF form of data: its length is what virt_size must be. */
static size_t crlf_len(const unsigned char *data, size_t size)
{
	size_t len = size;

	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			len++;
	}
	return len;
}

static void round_trip(struct lmbox_store *store, const char *what,
		       const unsigned char *data, size_t size, size_t chunk)
{
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	struct lmbox_commit_result result;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	struct lmbox_body *body;
	unsigned char *out, buf[333];
	size_t out_size, pos;
	ssize_t n;
	uint32_t uid;

	/* write in chunks: bare-LF counting must work across them */
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_append_begin(txn, folder, NULL, &append));
	for (pos = 0; pos < size; pos += chunk) {
		size_t n2 = size - pos < chunk ? size - pos : chunk;
		CHECK_OK(store, lmbox_append_write(append, data + pos, n2));
	}
	CHECK(lmbox_append_finish(&append) == 0);
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	CHECK(result.uid_count == 1);
	uid = result.uids[0];
	lmbox_commit_result_free(&result);

	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_msg(reader, folder, uid, &meta));
	if (meta.phys_size != size || meta.virt_size != crlf_len(data, size))
		fprintf(stderr, "%s: phys %llu virt %llu, expected %zu %zu\n", what,
			(unsigned long long)meta.phys_size, (unsigned long long)meta.virt_size,
			size, crlf_len(data, size));
	CHECK(meta.phys_size == size);
	CHECK(meta.virt_size == crlf_len(data, size));
	CHECK(meta.uid == uid && meta.folder_id == folder);

	CHECK_OK(store, lmbox_body_read_all(store, &meta, &out, &out_size));
	CHECK(out_size == size);
	CHECK(size == 0 || memcmp(out, data, size) == 0);
	free(out);

	/* and through the stream with an odd buffer size */
	CHECK_OK(store, lmbox_body_open(store, &meta, &body));
	pos = 0;
	while ((n = lmbox_body_read(body, buf, sizeof(buf))) > 0) {
		CHECK(pos + (size_t)n <= size && memcmp(buf, data + pos, (size_t)n) == 0);
		pos += (size_t)n;
	}
	CHECK_OK(store, n);
	CHECK(pos == size);
	CHECK(lmbox_body_read(body, buf, sizeof(buf)) == 0);
	lmbox_body_close(&body);
	CHECK(body == NULL);
	lmbox_reader_end(&reader);
	CHECK(reader == NULL);
}

static void test_bodies(struct lmbox_store *store)
{
	static const char *texts[] = {
		"Subject: lf\n\nbody\n",
		"Subject: crlf\r\n\r\nbody\r\n",
		"Subject: mixed\r\nX: y\n\nline\r\nline\n",
		"Subject: bare cr\r\rfoo\rbar\r",
		"no final newline",
		"\n",
		"\r\n",
		"\n\n\n\r\n\r\r\n\n",
	};
	unsigned char nul[] = "a\0b\n\0\0\r\n\0";
	unsigned char *buf;
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		for (size_t chunk = 1; chunk <= 7; chunk += 3)
			round_trip(store, texts[i], (const unsigned char *)texts[i],
				   strlen(texts[i]), chunk);
	}
	round_trip(store, "nul", nul, sizeof(nul) - 1, 1);
	round_trip(store, "empty", (const unsigned char *)"", 0, 1);

	/* lines over 998 octets, compressible */
	buf = malloc(200000);
	for (i = 0; i < 200000; i++)
		buf[i] = i % 5000 == 4999 ? '\n' : (unsigned char)('a' + i % 26);
	round_trip(store, "long lines", buf, 200000, 4096);
	/* incompressible (stored raw) and above the raw-keep limit */
	srand(42);
	for (i = 0; i < 200000; i++)
		buf[i] = (unsigned char)rand();
	round_trip(store, "random 200k", buf, 200000, 65536);
	round_trip(store, "random small", buf, 3000, 3000);
	free(buf);
}

/* A small mail-like message: headers the dictionary knows. */
static const char mail_msg[] =
	"Return-Path: <alice@mail.example.net>\r\n"
	"Received: from mx.example.net (mx.example.net [192.0.2.7])\r\n"
	"\tby mail.example.com (Postfix) with ESMTPS id 4ABCD12345\r\n"
	"\tfor <bob@example.com>; Tue, 3 Nov 2026 10:11:12 +0000 (UTC)\r\n"
	"From: Alice <alice@mail.example.net>\r\nTo: bob@example.com\r\n"
	"Subject: Re: lunch\r\nDate: Tue, 3 Nov 2026 10:11:10 +0000\r\n"
	"Message-ID: <20261103101110.4711@mail.example.net>\r\nMIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
	"Noon at the usual place? Best regards, Alice\r\n";

/* Append text with the codec forced to `codec` (0 = the default); its uid. */
static uint32_t append_codec(struct lmbox_store *store, int codec, const char *text)
{
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	struct lmbox_commit_result result;
	uint32_t uid;

	lmbox_append_force_codec = codec;
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_append_begin(txn, folder, NULL, &append));
	CHECK_OK(store, lmbox_append_write(append, text, strlen(text)));
	CHECK(lmbox_append_finish(&append) == 0);
	lmbox_append_force_codec = 0;
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	CHECK(result.uid_count == 1);
	uid = result.uids[0];
	lmbox_commit_result_free(&result);
	return uid;
}

static void check_codec(struct lmbox_store *store, uint32_t uid, uint8_t codec,
			const char *text, uint64_t *stored_r)
{
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	unsigned char *out;
	size_t out_size;

	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_msg(reader, folder, uid, &meta));
	CHECK(meta.codec == codec);
	CHECK_OK(store, lmbox_body_read_all(store, &meta, &out, &out_size));
	CHECK(out_size == strlen(text) && memcmp(out, text, out_size) == 0);
	free(out);
	*stored_r = meta.stored_size;
	lmbox_reader_end(&reader);
}

/* Codec 2 (deflate + dictionary 1) is what new messages get; codec 1 and raw
   messages written before (forced here, as older versions wrote them) stay
   readable next to them, also after reopening the store. */
static void test_codecs(struct lmbox_store **storep)
{
	struct lmbox_store *store = *storep;
	uint32_t uid1, uid2, uid0;
	uint64_t s1, s2, s0;

	/* dictionary 1 never changes */
	CHECK(lmbox_dict1_size == LMBOX_DICT1_SIZE);
	CHECK((uint32_t)adler32(adler32(0, NULL, 0), lmbox_dict1, (uInt)lmbox_dict1_size) ==
	      LMBOX_DICT1_ADLER32);

	uid1 = append_codec(store, LMBOX_CODEC_DEFLATE, mail_msg);
	uid2 = append_codec(store, 0, mail_msg);
	uid0 = append_codec(store, 0, "x");
	check_codec(store, uid1, LMBOX_CODEC_DEFLATE, mail_msg, &s1);
	check_codec(store, uid2, LMBOX_CODEC_DEFLATE_DICT1, mail_msg, &s2);
	check_codec(store, uid0, LMBOX_CODEC_RAW, "x", &s0);
	CHECK(s2 + 100 < s1); /* the dictionary pays off on a small message */
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);

	/* the old codec through all the round trips too */
	lmbox_append_force_codec = LMBOX_CODEC_DEFLATE;
	test_bodies(store);
	lmbox_append_force_codec = 0;

	lmbox_store_close(storep);
	*storep = store = test_open("msgs", 0);
	check_codec(store, uid1, LMBOX_CODEC_DEFLATE, mail_msg, &s1);
	check_codec(store, uid2, LMBOX_CODEC_DEFLATE_DICT1, mail_msg, &s2);
	check_codec(store, uid0, LMBOX_CODEC_RAW, "x", &s0);
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
}

static void test_uidl_and_meta(struct lmbox_store *store)
{
	struct lmbox_append_opts opts;
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	const char *kws[] = { "$Forwarded", "NonJunk", "$Forwarded", NULL };
	uint8_t guid[LMBOX_GUID_SIZE];
	char expect[32];
	const char *kw;
	uint32_t f, uid1, uid2, uid3, found;

	CHECK_OK(store, lmbox_folder_create(store, "uidl", 0x1234abcd, NULL, &f));
	uid1 = test_append(store, f, "a\n", 2, NULL);
	CHECK(uid1 == 1);

	lmbox_append_opts_init(&opts);
	opts.uidl = "given-UIDL.1";
	opts.flags = LMBOX_FLAG_SEEN | LMBOX_FLAG_FLAGGED;
	opts.keywords = kws;
	opts.received_date = 1000000000;
	opts.save_date = 1100000000;
	opts.pop3_order = 7;
	memset(guid, 0xab, sizeof(guid));
	opts.guid = guid;
	uid2 = test_append(store, f, "b\r\n", 3, &opts);
	CHECK(uid2 == 2);

	/* a requested UID is honoured when not below next_uid */
	opts.uid = 100;
	opts.keywords = NULL;
	uid3 = test_append(store, f, "c", 1, &opts);
	CHECK(uid3 == 100);
	opts.uid = 50;
	CHECK(test_append(store, f, "d", 1, &opts) == 101);

	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_folder(reader, f, &info));
	CHECK(info.next_uid == 102 && info.count == 4 && info.uidvalidity == 0x1234abcd);
	CHECK_OK(store, lmbox_reader_msg(reader, f, uid1, &meta));
	snprintf(expect, sizeof(expect), "%08x%08x", uid1, 0x1234abcd);
	CHECK(strcmp(meta.uidl, expect) == 0);
	CHECK(meta.kw_count == 0 && meta.flags == 0);
	CHECK_OK(store, lmbox_reader_uidl(reader, f, expect, &found));
	CHECK(found == uid1);

	CHECK_OK(store, lmbox_reader_msg(reader, f, uid2, &meta));
	CHECK(strcmp(meta.uidl, "given-UIDL.1") == 0);
	CHECK(meta.flags == (LMBOX_FLAG_SEEN | LMBOX_FLAG_FLAGGED));
	CHECK(meta.received_date == 1000000000 && meta.save_date == 1100000000);
	CHECK(meta.pop3_order == 7);
	CHECK(memcmp(meta.guid, guid, sizeof(guid)) == 0);
	CHECK(meta.kw_count == 2);
	kw = lmbox_meta_next_keyword(&meta, NULL);
	CHECK(kw != NULL && strcmp(kw, "$Forwarded") == 0);
	kw = lmbox_meta_next_keyword(&meta, kw);
	CHECK(kw != NULL && strcmp(kw, "NonJunk") == 0);
	CHECK(lmbox_meta_next_keyword(&meta, kw) == NULL);

	/* duplicates: the lowest UID wins */
	CHECK_OK(store, lmbox_reader_uidl(reader, f, "given-UIDL.1", &found));
	CHECK(found == uid2);
	CHECK_ERR(store, lmbox_reader_uidl(reader, f, "nope", &found), LMBOX_ERR_NOTFOUND);
	CHECK_ERR(store, lmbox_reader_msg(reader, f, 3, &meta), LMBOX_ERR_NOTFOUND);
	lmbox_reader_end(&reader);

	/* bad UIDLs are refused */
	{
		struct lmbox_txn *txn;
		struct lmbox_append *append;
		char long_uidl[80];

		memset(long_uidl, 'x', 71);
		long_uidl[71] = '\0';
		CHECK_OK(store, lmbox_txn_begin(store, &txn));
		opts.uidl = "has space";
		CHECK_ERR(store, lmbox_append_begin(txn, f, &opts, &append), LMBOX_ERR_INVALID);
		opts.uidl = "";
		CHECK_ERR(store, lmbox_append_begin(txn, f, &opts, &append), LMBOX_ERR_INVALID);
		opts.uidl = long_uidl;
		CHECK_ERR(store, lmbox_append_begin(txn, f, &opts, &append), LMBOX_ERR_INVALID);
		long_uidl[70] = '\0';
		CHECK_OK(store, lmbox_append_begin(txn, f, &opts, &append));
		lmbox_append_abort(&append);
		CHECK(append == NULL);
		lmbox_txn_abort(&txn);
		CHECK(txn == NULL);
	}
}

static void test_flags_keywords(struct lmbox_store *store)
{
	struct lmbox_txn *txn;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	struct lmbox_folder_info before, after;
	const char *add[] = { "a", "b", "c", NULL }, *rm[] = { "b", "zz", NULL };
	const char *repl[] = { "x", NULL };
	const char *kw;
	uint32_t f, uid;

	CHECK_OK(store, lmbox_folder_create(store, "flags", 0, NULL, &f));
	uid = test_append(store, f, "x\n", 2, NULL);
	CHECK_OK(store, lmbox_folder_get(store, f, &before));

	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_txn_update_flags(txn, f, uid, LMBOX_MODIFY_ADD, LMBOX_FLAG_SEEN));
	CHECK_OK(store, lmbox_txn_update_flags(txn, f, uid, LMBOX_MODIFY_ADD, LMBOX_FLAG_DELETED));
	CHECK_OK(store, lmbox_txn_update_flags(txn, f, uid, LMBOX_MODIFY_REMOVE, LMBOX_FLAG_DELETED));
	CHECK_OK(store, lmbox_txn_update_keywords(txn, f, uid, LMBOX_MODIFY_ADD, add));
	CHECK_OK(store, lmbox_txn_update_keywords(txn, f, uid, LMBOX_MODIFY_REMOVE, rm));
	CHECK_OK(store, lmbox_txn_set_pop3_first_retr(txn, f, uid, 12345));
	CHECK_OK(store, lmbox_txn_set_pop3_first_retr(txn, f, uid, 99999));
	/* a flag change of a message that does not exist is skipped */
	CHECK_OK(store, lmbox_txn_update_flags(txn, f, 999, LMBOX_MODIFY_ADD, LMBOX_FLAG_SEEN));
	CHECK_ERR(store, lmbox_txn_update_flags(txn, f, uid, LMBOX_MODIFY_ADD, 0x80),
		  LMBOX_ERR_INVALID);
	CHECK_OK(store, lmbox_txn_commit(&txn, NULL));

	CHECK_OK(store, lmbox_folder_get(store, f, &after));
	CHECK(after.change_counter == before.change_counter + 1);
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_msg(reader, f, uid, &meta));
	CHECK(meta.flags == LMBOX_FLAG_SEEN);
	CHECK(meta.pop3_first_retr == 12345);
	CHECK(meta.kw_count == 2);
	kw = lmbox_meta_next_keyword(&meta, NULL);
	CHECK(kw != NULL && strcmp(kw, "a") == 0);
	kw = lmbox_meta_next_keyword(&meta, kw);
	CHECK(kw != NULL && strcmp(kw, "c") == 0);
	lmbox_reader_end(&reader);

	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_txn_update_keywords(txn, f, uid, LMBOX_MODIFY_REPLACE, repl));
	CHECK_OK(store, lmbox_txn_update_flags(txn, f, uid, LMBOX_MODIFY_REPLACE,
					       LMBOX_FLAG_ANSWERED | LMBOX_FLAG_DRAFT));
	CHECK_OK(store, lmbox_txn_commit(&txn, NULL));
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_msg(reader, f, uid, &meta));
	CHECK(meta.flags == (LMBOX_FLAG_ANSWERED | LMBOX_FLAG_DRAFT));
	CHECK(meta.kw_count == 1 && strcmp(meta.keywords, "x") == 0);
	/* the body is untouched by metadata changes */
	{
		unsigned char *data;
		size_t size;
		CHECK_OK(store, lmbox_body_read_all(store, &meta, &data, &size));
		CHECK(size == 2 && memcmp(data, "x\n", 2) == 0);
		free(data);
	}
	lmbox_reader_end(&reader);
}

static void test_copy_move_expunge(struct lmbox_store *store)
{
	struct lmbox_txn *txn;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta, meta2;
	struct lmbox_commit_result result;
	struct lmbox_folder_info src, dst;
	struct lmbox_append_opts opts;
	unsigned char *data;
	size_t size;
	uint32_t fs, fd, u1, u2, u3, found;
	uint64_t opens;

	CHECK_OK(store, lmbox_folder_create(store, "src", 0, NULL, &fs));
	CHECK_OK(store, lmbox_folder_create(store, "dst", 0, NULL, &fd));
	lmbox_append_opts_init(&opts);
	opts.uidl = "keep-me";
	opts.flags = LMBOX_FLAG_SEEN;
	u1 = test_append(store, fs, "one\n", 4, &opts);
	u2 = test_append(store, fs, "two\n\n", 5, NULL);
	u3 = test_append(store, fs, "three", 5, NULL);

	opens = lmbox_body_open_count();
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK(lmbox_txn_copy(txn, fs, u1, fd) == 0);
	CHECK(lmbox_txn_move(txn, fs, u2, fd) == 1);
	CHECK(lmbox_txn_copy(txn, fs, 777, fd) == 2);   /* vanished source */
	CHECK_OK(store, lmbox_txn_expunge(txn, fs, u3));
	CHECK_OK(store, lmbox_txn_expunge(txn, fs, u3)); /* twice: skipped */
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	CHECK(result.uid_count == 3);
	CHECK(result.uids[0] == 1 && result.uids[1] == 2 && result.uids[2] == 0);
	CHECK(result.expunged == 1);
	lmbox_commit_result_free(&result);
	/* no body was opened through the API for this */
	CHECK(lmbox_body_open_count() == opens);

	CHECK_OK(store, lmbox_folder_get(store, fs, &src));
	CHECK_OK(store, lmbox_folder_get(store, fd, &dst));
	CHECK(src.count == 1 && src.vsize_total == 5 && src.psize_total == 4);
	CHECK(dst.count == 2 && dst.vsize_total == 5 + 7 && dst.psize_total == 9);

	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_msg(reader, fd, 1, &meta));
	CHECK(strcmp(meta.uidl, "keep-me") == 0 && meta.flags == LMBOX_FLAG_SEEN);
	CHECK_OK(store, lmbox_reader_msg(reader, fs, u1, &meta2));
	CHECK(memcmp(meta.guid, meta2.guid, LMBOX_GUID_SIZE) == 0);
	CHECK(meta.seg_offset != meta2.seg_offset || meta.seg_id != meta2.seg_id);
	CHECK_OK(store, lmbox_body_read_all(store, &meta, &data, &size));
	CHECK(size == 4 && memcmp(data, "one\n", 4) == 0);
	free(data);
	CHECK(lmbox_body_open_count() == opens + 1);
	CHECK_OK(store, lmbox_reader_uidl(reader, fd, "keep-me", &found));
	CHECK(found == 1);
	CHECK_ERR(store, lmbox_reader_msg(reader, fs, u2, &meta), LMBOX_ERR_NOTFOUND);
	CHECK_OK(store, lmbox_reader_msg(reader, fd, 2, &meta));
	CHECK_OK(store, lmbox_body_read_all(store, &meta, &data, &size));
	CHECK(size == 5 && memcmp(data, "two\n\n", 5) == 0);
	free(data);
	lmbox_reader_end(&reader);

	/* expunging the original leaves the copy readable */
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_txn_expunge(txn, fs, u1));
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	CHECK(result.expunged == 1 && result.uid_count == 0);
	lmbox_commit_result_free(&result);
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_msg(reader, fd, 1, &meta));
	CHECK_OK(store, lmbox_body_read_all(store, &meta, &data, &size));
	CHECK(size == 4 && memcmp(data, "one\n", 4) == 0);
	free(data);
	CHECK_ERR(store, lmbox_reader_uidl(reader, fs, "keep-me", &found), LMBOX_ERR_NOTFOUND);
	lmbox_reader_end(&reader);

	/* a copy within the folder shares the UIDL: lowest UID returned */
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK(lmbox_txn_copy(txn, fd, 1, fd) == 0);
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	CHECK(result.uid_count == 1 && result.uids[0] == 3);
	lmbox_commit_result_free(&result);
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_uidl(reader, fd, "keep-me", &found));
	CHECK(found == 1);
	lmbox_reader_end(&reader);
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_txn_expunge(txn, fd, 1));
	CHECK_OK(store, lmbox_txn_commit(&txn, NULL));
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_uidl(reader, fd, "keep-me", &found));
	CHECK(found == 3);
	lmbox_reader_end(&reader);
}

static void test_abort_and_iter(struct lmbox_store *store)
{
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	struct lmbox_folder_info before, after;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	uint32_t f, expect_uid;
	int ret, n;

	CHECK_OK(store, lmbox_folder_create(store, "iter", 0, NULL, &f));
	CHECK_OK(store, lmbox_folder_get(store, f, &before));
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_append_begin(txn, f, NULL, &append));
	CHECK_OK(store, lmbox_append_write(append, "zzz", 3));
	CHECK(lmbox_append_finish(&append) == 0);
	lmbox_txn_abort(&txn);
	lmbox_txn_abort(&txn); /* NULL-safe */
	CHECK_OK(store, lmbox_folder_get(store, f, &after));
	CHECK(memcmp(&before, &after, sizeof(before)) == 0);

	/* many messages in one transaction; then iterate in UID order */
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	for (int i = 0; i < 50; i++) {
		char line[64];
		int len = snprintf(line, sizeof(line), "Message %d\n", i);
		CHECK_OK(store, lmbox_append_begin(txn, f, NULL, &append));
		CHECK_OK(store, lmbox_append_write(append, line, (size_t)len));
		CHECK(lmbox_append_finish(&append) == i);
	}
	/* an append left open at commit is not part of it */
	CHECK_OK(store, lmbox_append_begin(txn, f, NULL, &append));
	CHECK_OK(store, lmbox_txn_commit(&txn, NULL));
	CHECK_ERR(store, lmbox_append_write(append, "x", 1), LMBOX_ERR_INVALID);
	lmbox_append_abort(&append);

	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	for (uint32_t uid = 2; uid <= 50; uid += 2)
		CHECK_OK(store, lmbox_txn_expunge(txn, f, uid));
	CHECK_OK(store, lmbox_txn_commit(&txn, NULL));

	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_msg_iter_init(reader, f, 10, &iter));
	expect_uid = 11;
	n = 0;
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		CHECK(meta.uid == expect_uid && meta.folder_id == f);
		expect_uid += 2;
		n++;
	}
	CHECK_OK(store, ret);
	CHECK(n == 20);
	lmbox_msg_iter_deinit(&iter);
	CHECK(iter == NULL);

	/* a borrowing iteration hands out the same messages and strings */
	{
		struct lmbox_msg_iter *biter;
		struct lmbox_msg_meta bmeta;
		int bret;

		CHECK_OK(store, lmbox_msg_iter_init(reader, f, 1, &iter));
		CHECK_OK(store, lmbox_msg_iter_init(reader, f, 1, &biter));
		lmbox_msg_iter_set_borrow(biter);
		n = 0;
		while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
			bret = lmbox_msg_iter_next(biter, &bmeta);
			CHECK(bret == 1);
			CHECK(bmeta.uid == meta.uid && bmeta.folder_id == f &&
			      bmeta.virt_size == meta.virt_size &&
			      bmeta.seg_offset == meta.seg_offset &&
			      strcmp(bmeta.uidl, meta.uidl) == 0 &&
			      bmeta.kw_count == meta.kw_count);
			n++;
		}
		CHECK_OK(store, ret);
		CHECK(n == 25);
		CHECK(lmbox_msg_iter_next(biter, &bmeta) == 0);
		lmbox_msg_iter_deinit(&biter);
		lmbox_msg_iter_deinit(&iter);
	}
	CHECK_OK(store, lmbox_reader_folder(reader, f, &after));
	CHECK(after.count == 25 && after.next_uid == 51);
	lmbox_reader_end(&reader);
}

static void test_refresh(struct lmbox_store *store)
{
	struct lmbox_reader *reader;
	struct lmbox_folder_info info;
	uint32_t f;

	CHECK_OK(store, lmbox_folder_create(store, "refresh", 0, NULL, &f));
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_folder(reader, f, &info));
	CHECK(info.count == 0);
	test_append(store, f, "new\n", 4, NULL);
	CHECK_OK(store, lmbox_reader_folder(reader, f, &info));
	CHECK(info.count == 0); /* snapshot */
	CHECK_OK(store, lmbox_reader_refresh(reader));
	CHECK_OK(store, lmbox_reader_folder(reader, f, &info));
	CHECK(info.count == 1 && info.vsize_total == 5);
	CHECK_OK(store, lmbox_reader_folder_by_name(reader, "refresh", &info));
	CHECK(info.id == f);
	lmbox_reader_end(&reader);
}

/* lmbox_crc32() and lmbox_adler32() are zlib's crc32() and adler32(): every
 * length from 0 to 300 at every alignment mod 16, then random lengths up to
 * 64 KiB from random starting values, on random bytes and on runs of 0xff
 * (the largest sums). */
static void test_checksums(void)
{
	static unsigned char buf[65536 + 64];
	uint32_t seed = 12345, c0, a0;
	size_t off, len;
	int t, bad = 0;

	for (size_t i = 0; i < sizeof(buf); i++) {
		seed = seed * 1103515245 + 12345;
		buf[i] = (unsigned char)(seed >> 16);
	}
	for (t = 0; t < 6000; t++) {
		seed = seed * 1103515245 + 12345;
		off = t < 4800 ? (size_t)t % 16 : (seed >> 8) % 64;
		len = t < 4800 ? (size_t)t / 16 : (seed >> 4) % 65536;
		c0 = t % 3 == 0 ? 0 : seed * 2654435761U;
		a0 = t % 3 == 0 ? 1 : ((seed >> 3) % 65521) | (((seed >> 11) % 65521) << 16);
		if (t % 5 == 4)
			memset(buf + off, 0xff, len);
		if (lmbox_crc32(c0, buf + off, len) != (uint32_t)crc32(c0, buf + off, (uInt)len))
			bad++;
		if (lmbox_adler32(a0, buf + off, len) != (uint32_t)adler32(a0, buf + off, (uInt)len))
			bad++;
	}
	CHECK(bad == 0);
	CHECK(lmbox_crc32(0, NULL, 0) == 0);
	CHECK(lmbox_adler32(1, NULL, 0) == 1);
}

int main(void)
{
	struct lmbox_store *store;

	test_init();
	test_checksums();
	store = test_open("msgs", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
	test_bodies(store);
	test_uidl_and_meta(store);
	test_flags_keywords(store);
	test_copy_move_expunge(store);
	test_abort_and_iter(store);
	test_refresh(store);
	test_codecs(&store);
	lmbox_store_close(&store);
	CHECK(store == NULL);

	/* the same at compression level 0 (every body raw) */
	{
		struct lmbox_store_opts opts;
		const char *err;

		lmbox_store_opts_init(&opts);
		opts.flags = LMBOX_OPEN_CREATE;
		opts.compress_level = 0;
		opts.fsync = LMBOX_FSYNC_NEVER;
		CHECK_OK(NULL, lmbox_store_open(test_path("raw"), &opts, &store, &err));
		CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
		test_bodies(store);
		lmbox_store_close(&store);
	}
	return test_exit();
}
