console.log('podnet');
