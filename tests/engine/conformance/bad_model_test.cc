// Placeholder while the test is written; replaced in the next commit.
