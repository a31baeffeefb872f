module saltyard.test/tinyweb

go 1.22
