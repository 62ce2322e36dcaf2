/* Compressed COCO RLE count strings, checked and measured in one compiled pass.
 *
 * scan(counts) -> (codes, totals, areas): per string, the first problem code (tmtvis.data.rle._PROBLEMS;
 * 0 = none, 2 = neither str nor bytes), the sum of its runs and the sum of its odd (foreground) runs,
 * as bytes of int8 / int64 / int64. Same decoding and rejections as rle._numpy_scan (the reference).
 *
 * intersections(a, b) -> bytes of int64: pixels in both masks of a[i] and b[i] (strings scan() accepted).
 *
 * take_compressed(segs, start, height, width, counts, frames) -> index: from segs[start] on, appends the counts
 * and frame of each plain compressed RLE ({"size": [height, width], "counts": str}, None skipped) to the two
 * lists; stops at the first other segmentation (left to the Python checks) and returns its index, or len(segs).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

enum { OK = 0, NON_ASCII = 1, NOT_STRING = 2, EMPTY = 3, BAD_CHAR = 4, TRUNCATED = 5, TOO_LONG = 6, NEGATIVE = 7 };

/* The characters of a str (ASCII only) or bytes object; returns a code when there are none to read. */
static int string_data(PyObject *o, const unsigned char **s, Py_ssize_t *n) {
    if (PyUnicode_Check(o)) {
        if (PyUnicode_READY(o) < 0) return NOT_STRING;
        if (!PyUnicode_IS_ASCII(o)) return NON_ASCII;
        *s = PyUnicode_1BYTE_DATA(o);
        *n = PyUnicode_GET_LENGTH(o);
        return OK;
    }
    if (PyBytes_Check(o)) {
        *s = (const unsigned char *)PyBytes_AS_STRING(o);
        *n = PyBytes_GET_SIZE(o);
        return OK;
    }
    return NOT_STRING;
}

/* Runs of a string, one after the other (pycocotools' rleFrString: 5 bits per char from '0', 0x20 = more
 * chars follow, 0x10 in the last char = negative, runs after the second are deltas to the run two before). */
typedef struct {
    const unsigned char *s;
    Py_ssize_t n, p;
    int64_t j, r1, r2;  /* runs read; the last run and the one before */
} Runs;

/* The next run in *run; 0 at the end, -1 for a value over 8 chars (40 bits: no real mask has one). */
static int next_run(Runs *d, int64_t *run) {
    if (d->p >= d->n) return 0;
    int c = d->s[d->p] - 48;
    int64_t v;
    if (!(c & 0x20)) {  /* one char: the common case */
        d->p++;
        v = (c & 0x10) ? (c & 0x1f) - 32 : (c & 0x1f);
    } else {
        uint64_t x = 0;
        int k = 0;
        do {
            if (k == 8) return -1;
            c = d->s[d->p++] - 48;
            x |= (uint64_t)(c & 0x1f) << (5 * k);
            k++;
        } while ((c & 0x20) && d->p < d->n);
        if (c & 0x10) x |= ~(uint64_t)0 << (5 * k);
        v = (int64_t)x;
    }
    if (d->j > 2) v = (int64_t)((uint64_t)v + (uint64_t)d->r2);  /* wraps like numpy's int64 */
    d->r2 = d->r1;
    d->r1 = v;
    d->j++;
    *run = v;
    return 1;
}

static int scan_one(const unsigned char *s, Py_ssize_t n, int64_t *total, int64_t *area) {
    *total = *area = 0;
    if (n == 0) return EMPTY;
    unsigned char bad = 0;
    for (Py_ssize_t i = 0; i < n; i++) bad |= (unsigned char)(s[i] - 48) > 63;  /* no branch: vectorised */
    if (bad) return BAD_CHAR;
    if ((s[n - 1] - 48) & 0x20) return TRUNCATED;
    Runs d = {s, n, 0, 0, 0, 0};
    int64_t run;
    int r, negative = 0;
    uint64_t t = 0, a = 0;
    while ((r = next_run(&d, &run)) == 1) {
        negative |= run < 0;
        t += (uint64_t)run;
        if (!(d.j & 1)) a += (uint64_t)run;  /* d.j was advanced: run index d.j - 1 is odd */
    }
    if (r < 0) return TOO_LONG;  /* a lower code than a negative run, wherever each comes */
    *total = (int64_t)t;
    *area = (int64_t)a;
    return negative ? NEGATIVE : OK;
}

static PyObject *scan(PyObject *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "scan() takes a sequence of count strings");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *codes = PyBytes_FromStringAndSize(NULL, n);
    PyObject *totals = PyBytes_FromStringAndSize(NULL, n * 8);
    PyObject *areas = PyBytes_FromStringAndSize(NULL, n * 8);
    if (!codes || !totals || !areas) goto fail;
    int8_t *code = (int8_t *)PyBytes_AS_STRING(codes);
    int64_t *total = (int64_t *)PyBytes_AS_STRING(totals), *area = (int64_t *)PyBytes_AS_STRING(areas);
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *s = NULL;
        Py_ssize_t len = 0;
        int c = string_data(items[i], &s, &len);
        total[i] = area[i] = 0;
        code[i] = (int8_t)(c != OK ? c : scan_one(s, len, &total[i], &area[i]));
    }
    Py_DECREF(seq);
    return Py_BuildValue("(NNN)", codes, totals, areas);
fail:
    Py_DECREF(seq);
    Py_XDECREF(codes);
    Py_XDECREF(totals);
    Py_XDECREF(areas);
    return NULL;
}

/* The next foreground interval [*s, *e) after *pos; 0 when there is none. */
static int next_fg(Runs *d, int64_t *pos, int64_t *s, int64_t *e) {
    int64_t bg, fg;
    for (;;) {
        if (next_run(d, &bg) != 1) return 0;
        *pos += bg;
        if (next_run(d, &fg) != 1) return 0;
        if (fg > 0) {
            *s = *pos;
            *pos += fg;
            *e = *pos;
            return 1;
        }
    }
}

static PyObject *intersections(PyObject *self, PyObject *args) {
    PyObject *a_arg, *b_arg;
    if (!PyArg_ParseTuple(args, "OO", &a_arg, &b_arg)) return NULL;
    PyObject *a_seq = PySequence_Fast(a_arg, "intersections() takes two sequences of count strings");
    if (!a_seq) return NULL;
    PyObject *b_seq = PySequence_Fast(b_arg, "intersections() takes two sequences of count strings");
    if (!b_seq) {
        Py_DECREF(a_seq);
        return NULL;
    }
    PyObject *out = NULL, *b_prev = NULL;
    int64_t *b_iv = NULL;  /* the foreground intervals of b_prev: start, end, start, end, ... */
    Py_ssize_t b_n = 0, b_cap = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(a_seq);
    if (PySequence_Fast_GET_SIZE(b_seq) != n) {
        PyErr_SetString(PyExc_ValueError, "intersections() takes two sequences of the same length");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, n * 8);
    if (!out) goto done;
    int64_t *inter = (int64_t *)PyBytes_AS_STRING(out);
    PyObject **as = PySequence_Fast_ITEMS(a_seq), **bs = PySequence_Fast_ITEMS(b_seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        Runs A = {NULL, 0, 0, 0, 0, 0};
        if (string_data(as[i], &A.s, &A.n) != OK) goto not_string;
        if (bs[i] != b_prev) {  /* a string repeated in a row (callers sort by it) is decoded once */
            Runs B = {NULL, 0, 0, 0, 0, 0};
            if (string_data(bs[i], &B.s, &B.n) != OK) goto not_string;
            int64_t pos = 0, s0, e0;
            b_n = 0;
            while (next_fg(&B, &pos, &s0, &e0)) {
                if (b_n + 2 > b_cap) {
                    Py_ssize_t cap = b_cap ? 2 * b_cap : 256;
                    int64_t *grown = PyMem_Realloc(b_iv, cap * sizeof(int64_t));
                    if (!grown) {
                        PyErr_NoMemory();
                        Py_CLEAR(out);
                        goto done;
                    }
                    b_iv = grown;
                    b_cap = cap;
                }
                b_iv[b_n++] = s0;
                b_iv[b_n++] = e0;
            }
            b_prev = bs[i];
        }
        int64_t pa = 0, sa, ea, sum = 0;
        Py_ssize_t k = 0;
        int ha = next_fg(&A, &pa, &sa, &ea);
        while (ha && k < b_n) {
            int64_t sb = b_iv[k], eb = b_iv[k + 1];
            int64_t lo = sa > sb ? sa : sb, hi = ea < eb ? ea : eb;
            if (hi > lo) sum += hi - lo;
            if (ea <= eb) ha = next_fg(&A, &pa, &sa, &ea);
            else k += 2;
        }
        inter[i] = sum;
    }
    goto done;
not_string:
    PyErr_SetString(PyExc_TypeError, "intersections() takes ASCII str or bytes count strings");
    Py_CLEAR(out);
done:
    PyMem_Free(b_iv);
    Py_DECREF(a_seq);
    Py_DECREF(b_seq);
    return out;
}

static PyObject *key_counts, *key_size;

/* 1 when o is an exact int equal to v; 0 otherwise (-1 with an error set on failure). */
static int int_equals(PyObject *o, Py_ssize_t v) {
    if (!PyLong_CheckExact(o)) return 0;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (x == -1 && PyErr_Occurred()) return -1;
    return !overflow && x == v;
}

static PyObject *take_compressed(PyObject *self, PyObject *args) {
    PyObject *segs, *counts, *frames;
    Py_ssize_t start, h, w;
    if (!PyArg_ParseTuple(args, "O!nnnO!O!", &PyList_Type, &segs, &start, &h, &w, &PyList_Type, &counts,
                          &PyList_Type, &frames))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(segs), i;
    for (i = start < 0 ? 0 : start; i < n; i++) {
        PyObject *seg = PyList_GET_ITEM(segs, i);
        if (seg == Py_None) continue;
        if (!PyDict_CheckExact(seg)) break;
        PyObject *c = PyDict_GetItemWithError(seg, key_counts);
        if (!c) {
            if (PyErr_Occurred()) return NULL;
            break;
        }
        PyObject *size = PyDict_GetItemWithError(seg, key_size);
        if (!size) {
            if (PyErr_Occurred()) return NULL;
            break;
        }
        if (!PyUnicode_CheckExact(c) || !PyList_CheckExact(size) || PyList_GET_SIZE(size) != 2) break;
        int eh = int_equals(PyList_GET_ITEM(size, 0), h), ew = int_equals(PyList_GET_ITEM(size, 1), w);
        if (eh < 0 || ew < 0) return NULL;
        if (!eh || !ew) break;
        PyObject *f = PyLong_FromSsize_t(i);
        if (!f || PyList_Append(counts, c) < 0 || PyList_Append(frames, f) < 0) {
            Py_XDECREF(f);
            return NULL;
        }
        Py_DECREF(f);
    }
    return PyLong_FromSsize_t(i);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, "Per count string: (codes int8, totals int64, areas int64) as bytes."},
    {"intersections", intersections, METH_VARARGS, "Pixels in both masks of each pair of count strings (int64 bytes)."},
    {"take_compressed", take_compressed, METH_VARARGS, "Queue plain compressed RLE from segs[start]; index of the first other."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rle_scan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__rle_scan(void) {
    key_counts = PyUnicode_InternFromString("counts");
    key_size = PyUnicode_InternFromString("size");
    if (!key_counts || !key_size) return NULL;
    return PyModule_Create(&module);
}
