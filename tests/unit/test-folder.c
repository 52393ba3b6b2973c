/*
 * test-folder: folder create/lookup/rename/delete/update/iterate, with
 * UIDVALIDITY and next_uid rules: ids never reused, picked UIDVALIDITYs
 * unique, next_uid only grows.
 */
#include "test-common.h"

static void test_basic(struct lmbox_store *store)
{
	struct lmbox_folder_info info;
	uint8_t guid[LMBOX_GUID_SIZE];
	uint32_t inbox, sent, uv[5];

	memset(guid, 0x5a, sizeof(guid));
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &inbox));
	CHECK_ERR(store, lmbox_folder_create(store, "INBOX", 0, NULL, NULL), LMBOX_ERR_EXISTS);
	CHECK(strstr(lmbox_store_errmsg(store), "INBOX") != NULL);
	CHECK_OK(store, lmbox_folder_create(store, "Sent", 777, guid, &sent));
	CHECK(sent > inbox);

	CHECK_OK(store, lmbox_folder_lookup(store, "Sent", &info));
	CHECK(info.id == sent && info.uidvalidity == 777 && info.next_uid == 1);
	CHECK(info.count == 0 && info.vsize_total == 0 && info.psize_total == 0);
	CHECK(memcmp(info.guid, guid, sizeof(guid)) == 0);
	CHECK(strcmp(info.name, "Sent") == 0);
	CHECK_OK(store, lmbox_folder_get(store, inbox, &info));
	CHECK(strcmp(info.name, "INBOX") == 0 && info.uidvalidity != 0);
	CHECK_ERR(store, lmbox_folder_lookup(store, "inbox", &info), LMBOX_ERR_NOTFOUND);
	CHECK_ERR(store, lmbox_folder_get(store, 9999, &info), LMBOX_ERR_NOTFOUND);
	CHECK_ERR(store, lmbox_folder_create(store, "", 0, NULL, NULL), LMBOX_ERR_INVALID);

	/* picked UIDVALIDITYs are unique even within one second */
	for (int i = 0; i < 5; i++) {
		char name[32];
		uint32_t id;

		snprintf(name, sizeof(name), "uv%d", i);
		CHECK_OK(store, lmbox_folder_create(store, name, 0, NULL, &id));
		CHECK_OK(store, lmbox_folder_get(store, id, &info));
		uv[i] = info.uidvalidity;
		for (int j = 0; j < i; j++)
			CHECK(uv[j] != uv[i]);
	}
}

static void test_rename_delete(struct lmbox_store *store)
{
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	struct lmbox_append_opts opts;
	uint32_t id, id2, uid;

	CHECK_OK(store, lmbox_folder_create(store, "Old", 0, NULL, &id));
	lmbox_append_opts_init(&opts);
	opts.uidl = "U1";
	uid = test_append(store, id, "msg\n", 4, &opts);
	CHECK_OK(store, lmbox_folder_rename(store, "Old", "New"));
	CHECK_ERR(store, lmbox_folder_lookup(store, "Old", &info), LMBOX_ERR_NOTFOUND);
	CHECK_OK(store, lmbox_folder_lookup(store, "New", &info));
	CHECK(info.id == id && info.count == 1);
	CHECK_ERR(store, lmbox_folder_rename(store, "New", "INBOX"), LMBOX_ERR_EXISTS);
	CHECK_ERR(store, lmbox_folder_rename(store, "Nope", "X"), LMBOX_ERR_NOTFOUND);

	CHECK_OK(store, lmbox_folder_delete(store, "New"));
	CHECK_ERR(store, lmbox_folder_delete(store, "New"), LMBOX_ERR_NOTFOUND);
	CHECK_ERR(store, lmbox_folder_get(store, id, &info), LMBOX_ERR_NOTFOUND);
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_ERR(store, lmbox_reader_msg(reader, id, uid, &meta), LMBOX_ERR_NOTFOUND);
	CHECK_ERR(store, lmbox_reader_uidl(reader, id, "U1", &uid), LMBOX_ERR_NOTFOUND);
	lmbox_reader_end(&reader);

	/* the name is free again, the id is not reused */
	CHECK_OK(store, lmbox_folder_create(store, "New", 0, NULL, &id2));
	CHECK(id2 > id);
	CHECK_OK(store, lmbox_folder_get(store, id2, &info));
	CHECK(info.count == 0 && info.next_uid == 1);
}

static void test_update(struct lmbox_store *store)
{
	struct lmbox_folder_info info;
	uint8_t guid[LMBOX_GUID_SIZE];
	uint32_t id;

	memset(guid, 0x11, sizeof(guid));
	CHECK_OK(store, lmbox_folder_create(store, "Upd", 100, NULL, &id));
	CHECK_OK(store, lmbox_folder_update(store, id, 200, 50, guid));
	CHECK_OK(store, lmbox_folder_get(store, id, &info));
	CHECK(info.uidvalidity == 200 && info.next_uid == 50);
	CHECK(memcmp(info.guid, guid, sizeof(guid)) == 0);
	/* next_uid never goes down; 0 = leave alone */
	CHECK_OK(store, lmbox_folder_update(store, id, 0, 10, NULL));
	CHECK_OK(store, lmbox_folder_get(store, id, &info));
	CHECK(info.uidvalidity == 200 && info.next_uid == 50);
	CHECK(test_append(store, id, "x", 1, NULL) == 50);
	CHECK_ERR(store, lmbox_folder_update(store, 99999, 1, 0, NULL), LMBOX_ERR_NOTFOUND);
}

static void test_long_names_and_iter(struct lmbox_store *store)
{
	struct lmbox_folder_iter *iter;
	struct lmbox_folder_info info, prev;
	char a[LMBOX_MAX_FOLDER_NAME + 2], b[LMBOX_MAX_FOLDER_NAME + 1];
	uint32_t ida, idb;
	int ret, n = 0;

	/* two names sharing a prefix longer than an LMDB key */
	memset(a, 'p', LMBOX_MAX_FOLDER_NAME);
	a[LMBOX_MAX_FOLDER_NAME] = '\0';
	memcpy(b, a, sizeof(b));
	b[LMBOX_MAX_FOLDER_NAME - 1] = 'q';
	CHECK_OK(store, lmbox_folder_create(store, a, 0, NULL, &ida));
	CHECK_OK(store, lmbox_folder_create(store, b, 0, NULL, &idb));
	CHECK_OK(store, lmbox_folder_lookup(store, a, &info));
	CHECK(info.id == ida);
	CHECK_OK(store, lmbox_folder_lookup(store, b, &info));
	CHECK(info.id == idb);
	CHECK_ERR(store, lmbox_folder_create(store, b, 0, NULL, NULL), LMBOX_ERR_EXISTS);
	a[LMBOX_MAX_FOLDER_NAME] = 'x';
	a[LMBOX_MAX_FOLDER_NAME + 1] = '\0';
	CHECK_ERR(store, lmbox_folder_create(store, a, 0, NULL, NULL), LMBOX_ERR_INVALID);

	CHECK_OK(store, lmbox_folder_iter_init(store, &iter));
	while ((ret = lmbox_folder_iter_next(iter, &info)) > 0) {
		if (n > 0)
			CHECK(strcmp(prev.name, info.name) < 0);
		prev = info;
		n++;
	}
	CHECK(ret == 0);
	/* INBOX Sent uv0-4 New Upd + 2 long */
	CHECK(n == 11);
	lmbox_folder_iter_deinit(&iter);
	CHECK(iter == NULL);
}

int main(void)
{
	struct lmbox_store *store;

	test_init();
	store = test_open("folders", LMBOX_OPEN_CREATE);
	test_basic(store);
	test_rename_delete(store);
	test_update(store);
	test_long_names_and_iter(store);
	lmbox_store_close(&store);
	return test_exit();
}
