/*
 * Unit tests: intake/normalize's Lanczos-3 downscale on synthetic JPEGs
 * whose pixels are known functions of position (smooth ramps, so a correct
 * resample lands within a few levels of the function at the output pixel's
 * centre). Covers the vertical pass that runs while the JPEG is decoded,
 * the horizontal pass, a very thin picture (taps clipped at both edges),
 * odd sizes (the AVX2 kernel's 16-byte strips and the scalar tail) and a
 * picture already inside the box (no resize at all).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>
#include <jpeglib.h>

#include "casevault/intake.h"

/*
 * The test picture, in coordinates u, v in [0, 1) across and down: grey
 * 128 + 50 sin(across) + 50 sin(down) with about 24 output pixels a period
 * (a row or column out of place moves a pixel by ~13 levels), red 10
 * levels above and blue 10 below (constant chroma: JPEG's subsampled
 * chroma adds no error); values 18..238, so nothing clamps.
 */
static double cycles_u, cycles_v;

static void pixel(unsigned x, unsigned y, unsigned w, unsigned h, uint8_t rgb[3])
{
    const double tau = 6.283185307179586;
    double u = (x + 0.5) / w, v = (y + 0.5) / h;
    double g = 128.0 + 50.0 * sin(tau * cycles_u * u) + 50.0 * sin(tau * cycles_v * v);
    rgb[0] = (uint8_t)(g + 10.5);
    rgb[1] = (uint8_t)(g + 0.5);
    rgb[2] = (uint8_t)(g - 9.5);
}

/* A quality-100 JPEG of the test picture (caller frees). */
static uint8_t *make_jpeg(unsigned w, unsigned h, unsigned long *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *mem = NULL;
    uint8_t *row = malloc((size_t)w * 3);
    assert_non_null(row);
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, len);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < h) {
        for (unsigned x = 0; x < w; x++)
            pixel(x, c.next_scanline, w, h, row + 3 * x);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    return mem;
}

/* Decode the normalized JPEG into RGB (caller frees). */
static uint8_t *decode(const struct cv_intake_image *img)
{
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr e;
    d.err = jpeg_std_error(&e);
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, img->data, (unsigned long)img->len);
    assert_int_equal(jpeg_read_header(&d, TRUE), JPEG_HEADER_OK);
    d.out_color_space = JCS_RGB;
    jpeg_start_decompress(&d);
    assert_int_equal(d.output_width, img->width);
    assert_int_equal(d.output_height, img->height);
    uint8_t *px = malloc((size_t)img->width * img->height * 3);
    assert_non_null(px);
    while (d.output_scanline < d.output_height) {
        JSAMPROW r = px + (size_t)d.output_scanline * img->width * 3;
        jpeg_read_scanlines(&d, &r, 1);
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    return px;
}

/*
 * Normalize a w x h test picture into box; expect ow x oh and every output
 * pixel within tol levels of the picture's function at its centre (the
 * outermost 3 pixels are left out: Lanczos rings at the picture's edge).
 */
static void check(unsigned w, unsigned h, unsigned box, unsigned ow, unsigned oh, int tol)
{
    unsigned long len = 0;
    cycles_u = ow >= 48 ? ow / 24 : 1;
    cycles_v = oh >= 48 ? oh / 24 : 1;
    uint8_t *jpg = make_jpeg(w, h, &len);
    struct cv_intake_limits lim = {100, 20000, 0, box};
    struct cv_intake_image img;
    assert_int_equal(cv_intake_normalize(jpg, len, &lim, &img), CV_OK);
    assert_int_equal(img.width, ow);
    assert_int_equal(img.height, oh);
    assert_int_equal(img.src_width, w);
    assert_int_equal(img.src_height, h);
    uint8_t *px = decode(&img);
    int worst = 0;
    for (unsigned y = 0; y < oh; y++) {
        for (unsigned x = 0; x < ow; x++) {
            if ((ow > 6 && (x < 3 || x >= ow - 3)) || (oh > 6 && (y < 3 || y >= oh - 3)))
                continue;
            uint8_t want[3];
            pixel(x, y, ow, oh, want);
            for (int c = 0; c < 3; c++) {
                int diff = abs((int)px[((size_t)y * ow + x) * 3 + c] - want[c]);
                if (diff > worst)
                    worst = diff;
            }
        }
    }
    free(px);
    cv_intake_image_deinit(&img);
    free(jpg);
    if (worst > tol)
        fail_msg("%ux%u -> %ux%u: a pixel is %d levels off (tolerance %d)", w, h, ow, oh, worst,
                 tol);
}

static void test_downscale_both_passes(void **state)
{
    (void)state;
    /* 2.4x: DCT-scaled to 1/2, streamed vertical pass, then horizontal */
    check(1200, 896, 500, 500, 373, 4);
    check(896, 1200, 500, 373, 500, 4);  /* portrait */
    check(1000, 1000, 999, 999, 999, 4); /* barely smaller: one tap dominates */
    /* odd sides: the 1/2 decode rounds 1203 up to 602 pixels that hold
     * 601.5 pixels of picture; spreading the output over all 602 shifted
     * the far edge (12 levels off with JPEG's own error, before the fix) */
    check(1203, 901, 500, 500, 374, 4);
    check(901, 1203, 500, 374, 500, 4);
}

static void test_downscale_odd_and_thin(void **state)
{
    (void)state;
    check(2016, 64, 333, 333, 11, 6); /* 11 rows: taps clipped at both edges */
    check(64, 2016, 333, 11, 333, 6);
    check(1025, 771, 517, 517, 389, 4); /* no DCT scaling; rows that leave a scalar tail */
}

static void test_inside_the_box_untouched(void **state)
{
    (void)state;
    check(640, 480, 2048, 640, 480, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_downscale_both_passes),
        cmocka_unit_test(test_downscale_odd_and_thin),
        cmocka_unit_test(test_inside_the_box_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
